"""The textured model a mesh run produces, and how it is written: GLB, OBJ + MTL + PNG (or all three in a .zip), PLY."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import Image
from pydantic import Field

from nstdiff.imageio import atomic_write, check_writable
from nstdiff.schema import RunResult
from extensions.mesh.schema import OUTPUT_SUFFIXES
from extensions.mesh.surface import sample

if TYPE_CHECKING:  # trimesh loads when a model is written or read, not with every command
    import trimesh


class MeshResult(RunResult):
    """Parts (world coordinates, atlas UVs) sharing one baked texture."""

    suffix: ClassVar[str] = ".glb"

    names: list[str]
    vertices: list[np.ndarray]  # per part (A, 3)
    faces: list[np.ndarray]  # per part (F, 3), indexing its vertices
    uvs: list[np.ndarray]  # per part (A, 2), v up
    texture: Image.Image
    picture: Image.Image = Field(description="Rendered views of the result, for galleries.")
    measures: dict[str, float] = Field(default_factory=dict, description="Seam jump, coverage, style loss before/after.")

    def _material(self, name: str) -> trimesh.visual.material.PBRMaterial:
        import trimesh

        return trimesh.visual.material.PBRMaterial(name=name, baseColorTexture=self.texture, metallicFactor=0.0,
                                                   roughnessFactor=1.0)

    def scene(self) -> trimesh.Scene:
        import trimesh

        material = self._material("nstdiff_style")
        scene = trimesh.Scene()
        for name, vertices, faces, uv in zip(self.names, self.vertices, self.faces, self.uvs):
            visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
            mesh = trimesh.Trimesh(vertices, faces, visual=visual, process=False)
            scene.add_geometry(mesh, node_name=name, geom_name=name)
        scene.metadata["nstdiff"] = self.metadata()
        return scene

    def joined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All parts as one mesh: vertices, faces, UVs (for OBJ and PLY, which keep no scene graph here)."""
        offsets = np.cumsum([0] + [len(v) for v in self.vertices[:-1]])
        faces = np.concatenate([f + o for f, o in zip(self.faces, offsets)])
        return np.concatenate(self.vertices), faces, np.concatenate(self.uvs)

    def obj_files(self, stem: str) -> dict[str, bytes]:
        """`stem`.obj, `stem`.mtl and `stem`.png: the OBJ names its MTL, the MTL its texture (map_Kd)."""
        import trimesh

        vertices, faces, uv = self.joined()
        visual = trimesh.visual.TextureVisuals(uv=uv, material=self._material(stem))
        mesh = trimesh.Trimesh(vertices, faces, visual=visual, process=False)
        text, extra = trimesh.exchange.obj.export_obj(mesh, include_texture=True, return_texture=True,
                                                      mtl_name=f"{stem}.mtl",
                                                      header=f"nstdiff {self.metadata_json()}")
        files = {f"{stem}.obj": text.encode()}
        files.update(extra)
        return files

    def ply_bytes(self) -> bytes:
        """Vertex colours: the texture read at each vertex's UV (what PLY viewers show without textures)."""
        import trimesh

        vertices, faces, uv = self.joined()
        colors = sample(np.asarray(self.texture, np.float32) / 255.0, uv)
        alpha = np.full((len(colors), 1), 255, np.uint8)
        rgba = np.concatenate([np.round(colors * 255).clip(0, 255).astype(np.uint8), alpha], 1)
        mesh = trimesh.Trimesh(vertices, faces, vertex_colors=rgba, process=False)
        return trimesh.exchange.ply.export_ply(mesh, encoding="binary")

    def save(self, path: str | Path) -> Path:
        """Write by suffix: .glb (textured, metadata in the asset extras), .obj (+ .mtl + .png beside it),
        .zip (those three in one file), .ply (vertex colours)."""
        path = check_writable(path, OUTPUT_SUFFIXES)  # before the export work, and before any companion file
        suffix = path.suffix.lower()
        if suffix == ".glb":
            data = self.scene().export(file_type="glb")
            return atomic_write(path, lambda part: part.write_bytes(data))
        if suffix == ".ply":
            data = self.ply_bytes()
            return atomic_write(path, lambda part: part.write_bytes(data))
        if suffix == ".obj":
            files = self.obj_files(path.stem)
            for name, data in files.items():  # the OBJ last: once it exists, what it names exists too
                if name != path.name:
                    atomic_write(path.with_name(name), lambda part, data=data: part.write_bytes(data))
            return atomic_write(path, lambda part: part.write_bytes(files[path.name]))
        buffer = io.BytesIO()  # .zip
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in self.obj_files(path.stem).items():
                archive.writestr(name, data)
        return atomic_write(path, lambda part: part.write_bytes(buffer.getvalue()))

    def preview(self) -> Image.Image:
        return self.picture

    def describe(self) -> str:
        m = self.measures
        faces = sum(len(f) for f in self.faces)
        return (f"{faces} triangles, texture {self.texture.width}², seam jump {m.get('seam_jump', 0):.1f}/255, "
                f"coverage {m.get('coverage', 0):.0%}, {super().describe()}")

    def metadata(self) -> dict:
        return {**super().metadata(), "measures": self.measures}

    @staticmethod
    def read_metadata(path: str | Path) -> dict:
        """The metadata a GLB written by `save` carries."""
        import trimesh

        scene = trimesh.load_scene(Path(path))
        value = scene.metadata.get("nstdiff", {})
        return json.loads(value) if isinstance(value, str) else value
