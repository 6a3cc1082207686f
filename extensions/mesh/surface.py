"""Reading a 3D model into one triangle soup with its own colours (`atlas.py` gives it a UV atlas to bake into).

Every part of a scene (node transforms applied) keeps its name and its own colour source: a texture (UVs + image,
times the material's base colour factor), vertex colours, face colours, or none (a flat material colour or
trimesh's default grey: there is no "content" to keep, the style paints it freely).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nstdiff.errors import InputError
from nstdiff.settings import Settings
from extensions.mesh.schema import MODEL_SUFFIXES

if TYPE_CHECKING:  # trimesh (with scipy and networkx) loads on a mesh job's first use, not with every command
    import trimesh

MAX_PARTS = 256
MAX_COORDINATE = 1e15  # beyond any real model's units; areas (coordinates squared) would overflow further out
FLAT_GREY = np.array([0.5, 0.5, 0.5], np.float32)


@dataclass
class Part:
    """One mesh of the scene, in world coordinates, with the colour source it came with."""

    name: str
    faces: slice  # its rows of Surface.faces
    kind: str  # "texture", "vertex", "face" or "flat"
    base: np.ndarray  # (3,) float32: material colour (multiplies a texture), or the flat colour
    uv: np.ndarray | None = None  # (F, 3, 2) texture coordinates per corner, for kind "texture"
    image: np.ndarray | None = None  # (H, W, 3) float32 in [0, 1]
    corner_colors: np.ndarray | None = None  # (F, 3, 3) per-corner colours for "vertex"/"face"


@dataclass
class Surface:
    vertices: np.ndarray  # (V, 3) float64, world coordinates
    faces: np.ndarray  # (F, 3) int64
    parts: list[Part]
    notes: list[str] = field(default_factory=list)

    @property
    def part_of_face(self) -> np.ndarray:
        owner = np.empty(len(self.faces), np.int64)
        for index, part in enumerate(self.parts):
            owner[part.faces] = index
        return owner

    @property
    def has_content(self) -> bool:
        return any(part.kind != "flat" for part in self.parts)

    def points(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Surface points Σ b_k v_k of (triangle, barycentric) pairs."""
        return np.einsum("nk,nkd->nd", bary, self.vertices[self.faces[face]])

    def colors(self, face: np.ndarray, bary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's own colour at (triangle, barycentric) pairs, float32 in [0, 1], and whether it has one there
        (False where a part only has a flat colour, which is returned but is not content to keep)."""
        colors = np.empty((len(face), 3), np.float32)
        has = np.zeros(len(face), bool)
        owner = self.part_of_face[face]
        for index, part in enumerate(self.parts):
            rows = np.flatnonzero(owner == index)
            if len(rows) == 0:
                continue
            local, weights = face[rows] - part.faces.start, bary[rows]
            if part.kind == "texture":
                uv = np.einsum("nk,nkd->nd", weights, part.uv[local])
                colors[rows] = sample(part.image, uv, wrap=True) * part.base
            elif part.kind in ("vertex", "face"):
                colors[rows] = np.einsum("nk,nkd->nd", weights, part.corner_colors[local])
            else:
                colors[rows] = part.base
            has[rows] = part.kind != "flat"
        return colors, has


def sample(image: np.ndarray, uv: np.ndarray, wrap: bool = False) -> np.ndarray:
    """Bilinear lookup of `image` (H, W, C) at texture coordinates `uv` (N, 2): v = 0 is the bottom row (glTF/OBJ).
    `wrap` repeats the image (tiling UVs of the model's own textures); otherwise edges are clamped."""
    height, width = image.shape[:2]
    x = uv[:, 0] * width - 0.5
    y = (1 - uv[:, 1]) * height - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]

    def at(xi: np.ndarray, yi: np.ndarray) -> np.ndarray:
        if wrap:
            return image[yi % height, xi % width]
        return image[yi.clip(0, height - 1), xi.clip(0, width - 1)]

    top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx
    bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


# -- reading --------------------------------------------------------------------------------------------------------

def load_surface(path: str | Path, settings: Settings) -> Surface:
    """Read a GLB/GLTF, OBJ (+MTL), PLY or STL file, or raise an `InputError` that says what is wrong with it."""
    import trimesh

    path = Path(path)
    what = f"3D model '{path.name}'"
    if not path.is_file():
        raise InputError(f"{what} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(f"{what} has an unsupported type '{suffix or '(none)'}'; use one of "
                         f"{', '.join(s[1:].upper() for s in MODEL_SUFFIXES)}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{what} is empty (0 bytes)")
    if size > settings.max_input_bytes:
        raise InputError(f"{what} is {size / 2**20:.1f} MiB, over the limit of "
                         f"{settings.max_input_bytes / 2**20:.0f} MiB; decimate it or raise NSTDIFF_MAX_INPUT_BYTES")
    try:
        # numpy's overflow warnings on damaged data would print before our message; the checks below say it instead
        with warnings.catch_warnings(action="ignore"):
            scene = trimesh.load_scene(path, process=False)  # processing would drop NaN vertices and their faces
        if not scene.geometry:
            raise ValueError("no geometry found in it")
    except Exception as exc:  # trimesh raises many types for damaged files; none of them may reach the user raw
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} could not be read as {suffix[1:].upper()} ({reason}); it may be damaged or "
                         "not what its name says — re-export it from your 3D tool") from None
    for name, geometry in scene.geometry.items():
        if isinstance(geometry, trimesh.Trimesh):
            _check_coordinates(np.asarray(geometry.vertices, np.float64), what, name)
            faces = np.asarray(geometry.faces)
            if faces.size and (faces.min() < 0 or faces.max() >= len(geometry.vertices)):
                raise InputError(f"{what}: mesh '{name}' has faces naming vertex {int(faces.max())}, but only "
                                 f"{len(geometry.vertices)} vertices; the file is damaged — re-export it")
            geometry.process()  # what loading would have done: merge duplicate vertices
    meshes = []
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry.get(geometry_name)
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            meshes.append((str(node), geometry, transform))
    if not meshes:
        raise InputError(f"{what} has no triangles (only points, lines or nothing); a mesh with faces is needed")
    if len(meshes) > MAX_PARTS:
        raise InputError(f"{what} has {len(meshes)} meshes, over the limit of {MAX_PARTS}; join them first")
    total = sum(len(mesh.faces) for _, mesh, _ in meshes)
    if total > settings.max_mesh_faces:
        raise InputError(f"{what} has {total:,} triangles, over the limit of {settings.max_mesh_faces:,}; decimate "
                         "it (e.g. Blender's Decimate modifier) or raise NSTDIFF_MAX_MESH_FACES")
    return _combine(meshes, what, settings)


def _check_coordinates(points: np.ndarray, what: str, name: str) -> None:
    if not np.isfinite(points).all():
        raise InputError(f"{what} has vertices with non-finite coordinates (NaN or infinity) in '{name}'; "
                         "repair it in your 3D tool")
    if len(points) and np.abs(points).max() > MAX_COORDINATE:
        raise InputError(f"{what} has coordinates beyond ±{MAX_COORDINATE:g} in '{name}'; scale it down in your 3D "
                         "tool")


def _combine(meshes: list[tuple[str, trimesh.Trimesh, np.ndarray]], what: str, settings: Settings) -> Surface:
    import trimesh

    vertices, faces, parts, notes = [], [], [], []
    offset = face_offset = dropped = 0
    for name, mesh, transform in meshes:
        with warnings.catch_warnings(action="ignore"):  # an overflowing node transform: checked just below
            points = trimesh.transform_points(np.asarray(mesh.vertices, np.float64), transform)
        _check_coordinates(points, what, name)
        tris = np.asarray(mesh.faces, np.int64)
        if tris.min() < 0 or tris.max() >= len(points):
            raise InputError(f"{what} has faces that point at vertices that do not exist in '{name}'")
        corners = points[tris]
        area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
        scale = float(np.ptp(points, axis=0).max()) or 1.0
        keep = area > 1e-12 * scale**2  # degenerate triangles show nothing and break unwrapping
        dropped += int((~keep).sum())
        if not keep.any():
            continue
        part = _colour_source(name, mesh, keep, what, settings)
        part.faces = slice(face_offset, face_offset + int(keep.sum()))
        vertices.append(points)
        faces.append(tris[keep] + offset)
        parts.append(part)
        offset += len(points)
        face_offset += int(keep.sum())
    if not parts:
        raise InputError(f"{what} has only degenerate triangles (zero area); there is no surface to texture")
    if dropped:
        notes.append(f"skipped {dropped} degenerate (zero-area) triangle{'s' * (dropped > 1)}")
    return Surface(np.concatenate(vertices), np.concatenate(faces), parts, notes)


def _colour_source(name: str, mesh: trimesh.Trimesh, keep: np.ndarray, what: str, settings: Settings) -> Part:
    import trimesh

    visual = mesh.visual
    tris = np.asarray(mesh.faces)[keep]
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        base = _material_colour(material)
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)  # PBR (glTF) or OBJ
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(mesh.vertices):
            if image.width * image.height > settings.max_input_pixels:
                raise InputError(f"{what}: the texture of '{name}' is {image.width}x{image.height}, over the limit "
                                 f"of {settings.max_input_pixels / 1e6:.3g} MP (NSTDIFF_MAX_INPUT_PIXELS)")
            uv = np.asarray(uv, np.float64)
            if not np.isfinite(uv).all():
                raise InputError(f"{what} has non-finite texture coordinates in '{name}'")
            pixels = np.asarray(image.convert("RGB"), np.float32) / 255.0
            return Part(name, slice(0), "texture", base, uv=uv[tris], image=pixels)
        return Part(name, slice(0), "flat", base)
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind in ("vertex", "face"):
        if visual.kind == "vertex":
            colors = np.asarray(visual.vertex_colors, np.float32)[:, :3] / 255.0
            return Part(name, slice(0), "vertex", FLAT_GREY, corner_colors=colors[tris])
        colors = np.asarray(visual.face_colors, np.float32)[keep, :3] / 255.0
        return Part(name, slice(0), "face", FLAT_GREY, corner_colors=np.repeat(colors[:, None], 3, 1))
    return Part(name, slice(0), "flat", FLAT_GREY)


def _material_colour(material) -> np.ndarray:
    factor = getattr(material, "baseColorFactor", None)
    if factor is None:
        factor = getattr(material, "diffuse", None)
    if factor is None:
        return np.ones(3, np.float32)
    factor = np.asarray(factor, np.float32)[:3]
    return factor / 255.0 if factor.max() > 1.0 else factor
