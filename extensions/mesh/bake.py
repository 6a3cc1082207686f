"""Baking colours into the atlas texture, padding its seams, and measuring what a viewer will see at the seams."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extensions.mesh.atlas import Atlas
from extensions.mesh.raster import rasterize
from extensions.mesh.surface import Surface, sample

SEAM_SAMPLES = np.linspace(0.15, 0.85, 5)  # points along each seam edge, off its end vertices


@dataclass
class Texels:
    """Which surface point each texel of a size×size texture shows (face -1: a gutter between charts)."""

    face: np.ndarray  # (size, size) int64
    bary: np.ndarray  # (size, size, 3)

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0


def texels(atlas: Atlas, size: int) -> Texels:
    xy = np.stack([atlas.uv[:, 0], 1 - atlas.uv[:, 1]], 1) * size  # v up → image rows down
    fragments = rasterize(xy, atlas.faces, size, size)
    return Texels(fragments.face, fragments.bary)


def pad(texture: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Fill every gutter texel with its nearest chart texel (an exact Euclidean distance transform), so bilinear
    filtering and mipmaps at chart borders never mix in gutter colours."""
    if filled.all() or not filled.any():
        return texture
    from scipy import ndimage  # loaded by a mesh job, not by every command

    _, (rows, cols) = ndimage.distance_transform_edt(~filled, return_indices=True)
    return texture[rows, cols]


def atlas_uv_of(surface: Surface, atlas: Atlas, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Atlas texture coordinates of (triangle, barycentric) pairs."""
    return np.einsum("nk,nkd->nd", bary, atlas.uv[atlas.faces[face]])


def seam_jump(surface: Surface, atlas: Atlas, texture: np.ndarray) -> float:
    """Mean colour difference (0–255) across UV seams: along every edge whose two triangles lie in different places
    of the atlas, the texture is read at the same surface points from both sides and compared. 0 = invisible seams.
    Vertices are matched by position, so models split at seams (STL soups, per-corner OBJ) count the same."""
    positions = np.round(surface.vertices / (np.ptp(surface.vertices, axis=0).max() or 1.0), 6)
    _, canonical = np.unique(positions, axis=0, return_inverse=True)
    geometry = canonical.reshape(-1)[surface.faces]
    a = geometry.reshape(-1)
    b = np.roll(geometry, -1, axis=1).reshape(-1)
    ua = atlas.uv[atlas.faces].reshape(-1, 2)
    ub = atlas.uv[np.roll(atlas.faces, -1, axis=1)].reshape(-1, 2)
    swap = a > b  # orient every edge the same way, so both sides' ends match
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    ua, ub = np.where(swap[:, None], ub, ua), np.where(swap[:, None], ua, ub)
    order = np.lexsort((b, a))
    same = (a[order][1:] == a[order][:-1]) & (b[order][1:] == b[order][:-1])
    first, second = order[:-1][same], order[1:][same]
    split = np.abs(ua[first] - ua[second]).sum(1) + np.abs(ub[first] - ub[second]).sum(1) > 1e-6
    first, second = first[split], second[split]
    if len(first) == 0:
        return 0.0
    t = SEAM_SAMPLES[None, :, None]
    side_one = (ua[first][:, None] * (1 - t) + ub[first][:, None] * t).reshape(-1, 2)
    side_two = (ua[second][:, None] * (1 - t) + ub[second][:, None] * t).reshape(-1, 2)
    return float(np.abs(sample(texture, side_one) - sample(texture, side_two)).mean() * 255)


def coverage(texel_map: Texels, seen_faces: np.ndarray) -> float:
    """Share of the texture's chart texels whose surface point lies on a triangle some view saw."""
    faces = texel_map.face[texel_map.mask]
    seen = np.zeros(int(texel_map.face.max()) + 2, bool)
    seen[seen_faces[seen_faces <= texel_map.face.max()]] = True
    return float(seen[faces].mean()) if len(faces) else 0.0
