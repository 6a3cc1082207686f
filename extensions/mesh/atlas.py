"""A UV atlas for a surface: where each triangle lies in the one output texture. The parts share one atlas and one
texture, unwrapped by xatlas (Young, "xatlas", after Lévy et al. 2002's LSCM charts) unless the model is a single part
whose UVs already map it once into [0, 1]².
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extensions.mesh.raster import rasterize
from extensions.mesh.surface import Part, Surface

UV_CHECK_SIZE = 512  # resolution at which existing UVs are tested for overlaps


@dataclass
class Atlas:
    """Where each triangle lies in the one output texture (u right, v up, as glTF/OBJ store them)."""

    uv: np.ndarray  # (A, 2) float64 atlas vertices
    faces: np.ndarray  # (F, 3) int64: rows aligned with Surface.faces
    source: np.ndarray  # (A,) int64: the Surface vertex each atlas vertex sits on
    unwrapped: bool  # True: made by xatlas; False: the model's own UVs



def own_uvs_usable(part: Part) -> bool:
    """The part's UVs can hold a baked texture: all inside [0, 1]² and no two triangles on the same texels."""
    uv = part.uv.reshape(-1, 2)
    if uv.min() < -1e-4 or uv.max() > 1 + 1e-4:
        return False
    corners = part.uv
    edge_one, edge_two = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = np.abs(edge_one[:, 0] * edge_two[:, 1] - edge_one[:, 1] * edge_two[:, 0]).sum() / 2
    xy = np.stack([uv[:, 0], 1 - uv[:, 1]], 1) * UV_CHECK_SIZE
    covered = rasterize(xy, np.arange(len(uv)).reshape(-1, 3), UV_CHECK_SIZE, UV_CHECK_SIZE).mask.mean()
    return area <= covered * 1.02 + 4.0 / UV_CHECK_SIZE  # overlapping or mirrored charts cover less than their area


def build_atlas(surface: Surface, texture_size: int) -> Atlas:
    """Keep a single textured part's own UVs when they are usable; otherwise unwrap every part into one atlas."""
    if len(surface.parts) == 1 and surface.parts[0].kind == "texture" and own_uvs_usable(surface.parts[0]):
        part = surface.parts[0]
        uv = part.uv.reshape(-1, 2)
        faces = np.arange(len(uv)).reshape(-1, 3)
        return Atlas(uv, faces, surface.faces[part.faces].reshape(-1), unwrapped=False)
    import xatlas

    if any(part.kind == "texture" for part in surface.parts):
        surface.notes.append("made a new UV atlas (xatlas): the model's UVs overlap, tile or cover several parts")
    else:
        surface.notes.append("the model had no UVs: unwrapped it with xatlas")
    atlas = xatlas.Atlas()
    for part in surface.parts:
        tris = surface.faces[part.faces]
        used, local = np.unique(tris, return_inverse=True)
        atlas.add_mesh(surface.vertices[used].astype(np.float32), local.reshape(-1, 3).astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = max(2, texture_size // 256)  # gutters wide enough for mipmaps and bilinear filtering
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    uvs, faces, sources = [], [], []
    offset = 0
    for index, part in enumerate(surface.parts):
        used = np.unique(surface.faces[part.faces])
        mapping, indices, uv = atlas[index]
        uvs.append(np.asarray(uv, np.float64))
        faces.append(np.asarray(indices, np.int64) + offset)
        sources.append(used[np.asarray(mapping, np.int64)])
        offset += len(uv)
    return Atlas(np.concatenate(uvs), np.concatenate(faces), np.concatenate(sources), unwrapped=True)

