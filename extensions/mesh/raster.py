"""A small z-buffer rasteriser in numpy and the orthographic cameras around a model.

Each view is rasterised once, before optimisation: every pixel gets the index of the nearest triangle under its
centre and the barycentric coordinates (b0, b1, b2) of that centre in it. Everything the optimisation renders later
(surface points, the model's own colours, texture coordinates) is Σ_k b_k · attribute(vertex_k), gathered with torch,
so rendering is differentiable in the colours — all texture optimisation needs — without a differentiable rasteriser
(the role pytorch3d / nvdiffrast play in TEXTure, Richardson et al. 2023, and Text2Mesh, Michel et al. 2022).
The same routine rasterises triangles in UV space to find, for every texel, the surface point it shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PAIRS = 4_000_000  # (triangle, pixel) candidates tested at once: bounds memory to a few hundred MB
MARGIN = 1.05  # the model's bounding sphere fills 1/1.05 of the view


@dataclass
class Fragments:
    face: np.ndarray  # (H, W) int64: triangle under each pixel centre, -1 for background
    bary: np.ndarray  # (H, W, 3) float32: barycentric coordinates of the pixel centre in that triangle

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0


def rasterize(xy: np.ndarray, faces: np.ndarray, height: int, width: int,
              depth: np.ndarray | None = None) -> Fragments:
    """Triangles `faces` (F, 3) over vertices at pixel positions `xy` (V, 2) (x right, y down, pixel centres at +0.5).

    With `depth` (V,), smaller is nearer and each pixel keeps its nearest triangle; without it (UV space) the lowest
    triangle index wins. Both windings are drawn (no back-face culling: a surface seen from behind is still that
    surface); triangles of zero area are skipped.
    """
    tri = xy[faces].astype(np.float64)  # (F, 3, 2)
    x0, y0, x1, y1, x2, y2 = tri[:, 0, 0], tri[:, 0, 1], tri[:, 1, 0], tri[:, 1, 1], tri[:, 2, 0], tri[:, 2, 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    lo = np.ceil(tri.min(1) - 0.5).clip(0, [width, height]).astype(np.int64)
    hi = np.floor(tri.max(1) - 0.5).clip(-1, [width - 1, height - 1]).astype(np.int64)
    span = (hi - lo + 1).clip(0)
    counts = span[:, 0] * span[:, 1]
    drawn = np.flatnonzero((counts > 0) & (np.abs(area) > 1e-12) & np.isfinite(area))
    face_depth = depth[faces].astype(np.float64) if depth is not None else None

    best = np.full(height * width, np.inf)
    face_buf = np.full(height * width, -1, np.int64)
    bary_buf = np.zeros((height * width, 3), np.float32)
    batch_of = np.cumsum(counts[drawn]) // MAX_PAIRS
    for batch in np.unique(batch_of):
        chunk = drawn[batch_of == batch]
        n = counts[chunk]
        face = np.repeat(chunk, n)
        local = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        px = lo[face, 0] + local % span[face, 0]
        py = lo[face, 1] + local // span[face, 0]
        cx, cy = px + 0.5, py + 0.5
        a = area[face]
        w0 = ((x1[face] - cx) * (y2[face] - cy) - (x2[face] - cx) * (y1[face] - cy)) / a
        w1 = ((x2[face] - cx) * (y0[face] - cy) - (x0[face] - cx) * (y2[face] - cy)) / a
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        face, w0, w1, w2 = face[inside], w0[inside], w1[inside], w2[inside]
        pixel = (py * width + px)[inside]
        z = (w0 * face_depth[face, 0] + w1 * face_depth[face, 1] + w2 * face_depth[face, 2]
             if face_depth is not None else face.astype(np.float64))
        order = np.lexsort((z, pixel))  # nearest first within each pixel
        first = np.ones(len(order), bool)
        first[1:] = pixel[order][1:] != pixel[order][:-1]
        nearest = order[first]
        win = nearest[z[nearest] < best[pixel[nearest]]]  # nearer than what earlier chunks drew there
        best[pixel[win]] = z[win]
        face_buf[pixel[win]] = face[win]
        bary_buf[pixel[win]] = np.stack([w0[win], w1[win], w2[win]], 1)
    return Fragments(face_buf.reshape(height, width), bary_buf.reshape(height, width, 3))


def view_directions(count: int) -> np.ndarray:
    """`count` unit vectors spread evenly over the sphere (a Fibonacci lattice), so 8 views also see top and bottom;
    one view looks at the front (+z, glTF's forward)."""
    if count == 1:
        return np.array([[0.0, 0.0, 1.0]])
    i = np.arange(count) + 0.5
    y = 1 - 2 * i / count
    r = np.sqrt(1 - y**2)
    phi = i * np.pi * (3 - np.sqrt(5))
    return np.stack([r * np.sin(phi), y, r * np.cos(phi)], 1)


@dataclass(frozen=True)
class Camera:
    """Orthographic camera on the model's bounding sphere (centre, radius), looking at the centre from `direction`."""

    direction: np.ndarray
    centre: np.ndarray
    radius: float

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        up = np.array([0.0, 1.0, 0.0]) if abs(self.direction[1]) < 0.99 else np.array([0.0, 0.0, -1.0])
        right = np.cross(up, self.direction)
        right /= np.linalg.norm(right)
        return right, np.cross(self.direction, right)

    def project(self, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions (x right, y down) and depths (smaller = nearer) of `points` in a size×size view."""
        right, up = self.axes()
        rel = (points - self.centre) / (self.radius * MARGIN)
        xy = np.stack([(rel @ right + 1) * size / 2, (1 - rel @ up) * size / 2], 1)
        return xy, -(rel @ self.direction)

    def rasterize(self, vertices: np.ndarray, faces: np.ndarray, size: int) -> Fragments:
        xy, depth = self.project(vertices, size)
        return rasterize(xy, faces, size, size, depth)


def cameras(vertices: np.ndarray, count: int) -> list[Camera]:
    lo, hi = vertices.min(0), vertices.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(vertices - centre, axis=1).max()) or 1.0
    return [Camera(d, centre, radius) for d in view_directions(count)]
