"""The mesh request: typed and bounded, shared by the CLI, the app tab and the Python API. Torch-free."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from nstdiff.schema import Frozen, ImageRef

MODEL_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
OUTPUT_SUFFIXES = (".glb", ".obj", ".zip", ".ply")  # .zip: OBJ + MTL + PNG in one download


class MeshStyleRequest(Frozen):
    """Texture a 3D model in the style of an image (see `extensions/mesh/method.py` for the maths)."""

    method: str = Field("mesh", description="A registered mesh method name.")
    model: Path = Field(..., description="The 3D model: GLB/GLTF, OBJ (+MTL and textures beside it), PLY or STL.")
    style: ImageRef = Field(..., description="The style image.")
    mode: Literal["field", "texture"] = Field(
        "field", description="field: optimise a colour field over the surface, then bake it (seamless); "
        "texture: optimise the texture image directly (fast preview, visible seams).")
    views: int = Field(8, ge=1, le=64, description="Views the model is rendered from.")
    view_size: int = Field(128, ge=32, le=1024, description="Side of each rendered view, in pixels.")
    steps: int | None = Field(None, ge=1, le=10_000, description="Optimisation steps; None = the mode's default.")
    texture_size: int = Field(1024, ge=64, le=4096, description="Side of the baked texture, in pixels.")
    strength: float = Field(0.7, ge=0, le=1, description="0 keeps the model's own colours, 1 is all style.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="None draws a seed, reported in the result.")
    encoder: str = Field("auto", description="Feature encoder: auto (best available), vgg19, vgg16, random.")
