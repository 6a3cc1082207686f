"""Texture stylization of 3D models: a colour field over the surface, fitted to a style through rendered views.

The model is rasterised once from V orthographic views around it (`raster.py`). A pixel p of view v shows the surface
point x_p with the model's own colour c(x_p) (texture, vertex colours, or grey). The rendered colour is

    I_v(p) = σ(logit c(x_p) + f_θ(x_p)),

where f_θ : R³ → R³ is a colour field: a sum of trilinearly interpolated dense grids at several resolutions (the
multi-resolution grids of Müller et al. 2022, "Instant Neural Graphics Primitives", without the hash; colour voxels
as in Fridovich-Keil et al. 2022, "Plenoxels"). θ minimises, with Adam over the views,

    L(θ) = Σ_v  α L_content(I_v, C_v) + β L_style(I_v, S),

L_style the Gram loss of Gatys et al. 2016 on the view's foreground (guided Gram matrices, Gatys et al. 2017 §4),
L_content the feature loss against the views C_v of the model's own colours, masked to where it has colours (α = 0
where it has none); α, β come from `strength` as for images. Because f_θ lives in 3D, both sides of a UV seam read
the same colour when it is baked into the texture: texel t showing point x_t gets σ(logit c(x_t) + f_θ(x_t)); gutters
are padded with their nearest chart texel. The "texture" mode (fast preview, and the baseline) instead optimises
f_θ as an image in atlas space, f_θ(uv), like TEXTure-style texture optimisation does — seams then show.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from extensions.mesh.atlas import Atlas, build_atlas
from extensions.mesh.bake import Texels, atlas_uv_of, coverage, pad, seam_jump, texels
from extensions.mesh.raster import Camera, Fragments, cameras
from extensions.mesh.result import MeshResult
from extensions.mesh.schema import MeshStyleRequest
from extensions.mesh.surface import Surface, load_surface, sample
from nstdiff.context import RunContext
from nstdiff.errors import InputError
from nstdiff.imageio import load_image, resize_long_side
from nstdiff.losses import STYLE_LAYERS, FeatureContentLoss, GramStyleLoss, gram_matrix, strength_weights
from nstdiff.methods.base import to_tensor
from nstdiff.registry import Capabilities, Method, register_method

CONTENT_LAYERS = ("relu2_2", "relu3_1", "relu4_2")
DEFAULT_STEPS = {"field": 60, "texture": 40}
LEARNING_RATE = {"field": 0.05, "texture": 0.05}
INIT_NOISE = 0.1  # seeded logit noise: a flat surface has no Gram gradient to start from
PREVIEW_SIZE = 256
VIEWS_PER_STEP = 4


class ColourField(nn.Module):
    """f_θ(x) = Σ_r trilinear(G_r, x) for grids G_r of r³ colour logits, x ∈ [−1, 1]³."""

    def __init__(self, finest: int, generator: torch.Generator):
        super().__init__()
        resolutions = [r for r in (8, 16, 32, 64, 128, 256) if r <= finest] or [finest]
        self.grids = nn.ParameterList(
            nn.Parameter(torch.randn(1, 3, r, r, r, generator=generator) * INIT_NOISE / len(resolutions))
            for r in resolutions
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        where = points.view(1, 1, 1, -1, 3)
        total = sum(F.grid_sample(grid, where, align_corners=True, padding_mode="border") for grid in self.grids)
        return total.view(3, -1).T


class TextureImage(nn.Module):
    """f_θ(uv) = bilinear(T, uv) for one size×size image of colour logits in atlas space (v up)."""

    def __init__(self, size: int, generator: torch.Generator):
        super().__init__()
        self.image = nn.Parameter(torch.randn(1, 3, size, size, generator=generator) * INIT_NOISE)

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        where = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], 1).view(1, 1, -1, 2)
        return F.grid_sample(self.image, where, align_corners=False, padding_mode="border").view(3, -1).T


def logit(colors: np.ndarray) -> np.ndarray:
    clipped = np.clip(colors, 0.01, 0.99)
    return np.log(clipped / (1 - clipped)).astype(np.float32)


class Views:
    """The visible pixels of every view, flattened: where they are in the images and what they show."""

    def __init__(self, surface: Surface, atlas: Atlas, fragments: list[Fragments], size: int, centre, radius):
        self.count, self.size = len(fragments), size
        masks = np.stack([f.mask for f in fragments])
        self.masks = masks
        self.index = np.flatnonzero(masks.reshape(-1))  # into the (V·H·W) pixels
        face = np.concatenate([f.face[f.mask] for f in fragments])
        bary = np.concatenate([f.bary[f.mask] for f in fragments]).astype(np.float64)
        self.seen = np.unique(face)
        self.points = (surface.points(face, bary) - centre) / radius
        self.base, self.has_content = surface.colors(face, bary)
        self.uv = atlas_uv_of(surface, atlas, face, bary)


def render(values: torch.Tensor, views: Views, index: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(V, 3, H, W) images: `values` (N, 3) at the visible pixels, `background` elsewhere."""
    canvas = background.expand(views.count * views.size * views.size, 3)
    canvas = canvas.index_copy(0, index, values)
    return canvas.view(views.count, views.size, views.size, 3).permute(0, 3, 1, 2)


@register_method
class MeshStyleMethod(Method):
    name = "mesh"
    title = "3D model texture (Gram, colour field)"
    description = "Textures a 3D model (GLB, OBJ, PLY, STL) in the style of an image; exports GLB, OBJ+MTL+PNG, PLY."
    request_model = MeshStyleRequest
    options_model = MeshStyleRequest
    capabilities = Capabilities(modality="mesh", needs_content=True, uses_encoder=True)

    def execute(self, request: MeshStyleRequest, context: RunContext) -> MeshResult:
        from nstdiff.models.encoders import load_encoder

        started = time.perf_counter()
        settings, device = context.settings, context.device
        if request.texture_size > settings.max_output_side:
            raise InputError(f"texture size {request.texture_size} is over the limit of {settings.max_output_side} "
                             "px (NSTDIFF_MAX_OUTPUT_SIDE)")
        style_image = load_image(request.style, "style", settings, max_side=request.view_size)
        surface = load_surface(request.model, settings)
        context.notes.extend(surface.notes)
        context.message("unwrapping and rasterising the views…")
        atlas = build_atlas(surface, request.texture_size)
        context.notes.extend(n for n in surface.notes if n not in context.notes)
        rigs = cameras(surface.vertices, request.views)
        centre, radius = rigs[0].centre, rigs[0].radius
        views = Views(surface, atlas, [c.rasterize(surface.vertices, surface.faces, request.view_size) for c in rigs],
                      request.view_size, centre, radius)
        prepared = time.perf_counter()

        loaded = load_encoder(request.encoder, device, settings, context.message)
        if loaded.note:
            context.notes.append(loaded.note)
        net = loaded.module
        style = to_tensor(resize_long_side(style_image, request.view_size), device)
        layer_weights = {layer: 1.0 / len(STYLE_LAYERS) for layer in STYLE_LAYERS}
        with torch.no_grad():
            targets = {layer: [gram_matrix(f)] for layer, f in net(style, STYLE_LAYERS).items()}
        masks = torch.from_numpy(views.masks).float().to(device)
        style_losses = [GramStyleLoss(targets, layer_weights, masks[v][None]) for v in range(views.count)]
        background = style.mean((0, 2, 3)).view(1, 3)

        index = torch.from_numpy(views.index).to(device)
        base_logit = torch.from_numpy(logit(views.base)).to(device)
        content_weight, style_weight = strength_weights(request.strength)
        content_targets, content_masks = None, {}
        if surface.has_content and content_weight > 0 and views.has_content.any():
            has = torch.zeros(views.count * views.size**2, device=device)
            has[index] = torch.from_numpy(views.has_content.astype(np.float32)).to(device)
            has = has.view(views.count, 1, views.size, views.size)
            with torch.no_grad():
                features = net(render(torch.sigmoid(base_logit), views, index, background), CONTENT_LAYERS)
            content_masks = {layer: F.interpolate(has, size=f.shape[-2:], mode="area") for layer, f in features.items()}
            content_targets = {layer: f * content_masks[layer] for layer, f in features.items()}
        layers = [*STYLE_LAYERS, *(CONTENT_LAYERS if content_targets else [])]

        generator = torch.Generator().manual_seed(context.seed)
        if request.mode == "field":
            field = ColourField(min(256, request.view_size), generator).to(device)
            inputs = torch.from_numpy(views.points.astype(np.float32)).to(device)
        else:
            field = TextureImage(min(request.texture_size, 2 * request.view_size), generator).to(device)
            inputs = torch.from_numpy(views.uv.astype(np.float32)).to(device)
        solver = torch.optim.Adam(field.parameters(), lr=LEARNING_RATE[request.mode])
        steps = request.steps or DEFAULT_STEPS[request.mode]
        losses: dict[str, float] = {}
        first_style = None
        batch = min(views.count, VIEWS_PER_STEP)
        for step in range(steps):
            # a few views a step, in turn: each step costs `batch` encoder passes, whatever `views` is
            chosen = [(step * batch + j) % views.count for j in range(batch)]
            solver.zero_grad(set_to_none=True)
            images = render(torch.sigmoid(base_logit + field(inputs)), views, index, background)
            features = net(images[chosen], layers)
            style_loss = sum(style_losses[v]({l: features[l][i:i + 1] for l in STYLE_LAYERS})
                             for i, v in enumerate(chosen)) / batch
            total = style_weight * style_loss
            parts = {"style": float(style_loss.detach())}
            if content_targets is not None:
                content_loss = FeatureContentLoss({l: content_targets[l][chosen] for l in CONTENT_LAYERS})
                content = content_loss({l: features[l] * content_masks[l][chosen] for l in CONTENT_LAYERS})
                total = total + content_weight * content
                parts["content"] = float(content.detach())
            if not torch.isfinite(total):
                raise InputError("the loss became non-finite; lower the strength or the number of steps")
            if step == 0:
                first_style = parts["style"]
            if total.requires_grad:
                total.backward()
                solver.step()
            losses = {**parts, "total": float(total.detach())}
            context.step(step + 1, steps, losses, stage="optimise")
        optimised = time.perf_counter()

        context.message("baking the texture…")
        texture, texel_map = bake(surface, atlas, field, request, centre, radius, device)
        measures = {
            "seam_jump": round(seam_jump(surface, atlas, texture), 3),
            "coverage": round(coverage(texel_map, views.seen), 4),
            "style_loss_start": round(first_style or 0.0, 6),
            "style_loss_end": losses.get("style", 0.0),
        }
        texture_image = Image.fromarray(np.round(texture * 255).astype(np.uint8), "RGB")
        names, vertices, faces, uvs = [], [], [], []
        for part in surface.parts:
            part_faces = atlas.faces[part.faces]
            used, local = np.unique(part_faces, return_inverse=True)
            names.append(part.name)
            vertices.append(surface.vertices[atlas.source[used]])
            faces.append(local.reshape(-1, 3))
            uvs.append(atlas.uv[used])
        picture = preview_picture(np.concatenate(vertices), np.concatenate(
            [f + o for f, o in zip(faces, np.cumsum([0] + [len(v) for v in vertices[:-1]]))]),
            np.concatenate(uvs), texture)
        resolved = request.model_dump(mode="json")
        resolved.update(seed=context.seed, encoder=loaded.name, steps=steps)
        finished = time.perf_counter()
        return MeshResult(
            names=names, vertices=vertices, faces=faces, uvs=uvs, texture=texture_image, picture=picture,
            measures=measures, method=self.name, encoder=loaded.name, seed=context.seed, parameters=resolved,
            losses=losses, notes=list(dict.fromkeys(context.notes)),
            timings={"prepare": round(prepared - started, 3), "optimise": round(optimised - prepared, 3),
                     "bake": round(finished - optimised, 3), "total": round(finished - started, 3)},
        )


def bake(surface: Surface, atlas: Atlas, field: nn.Module, request: MeshStyleRequest, centre, radius,
         device: torch.device) -> tuple[np.ndarray, Texels]:
    """The texture (size, size, 3) in [0, 1]: σ(logit c + f_θ) at every chart texel, gutters padded."""
    texel_map = texels(atlas, request.texture_size)
    face, bary = texel_map.face[texel_map.mask], texel_map.bary[texel_map.mask].astype(np.float64)
    base, _ = surface.colors(face, bary)
    where = (surface.points(face, bary) - centre) / radius if request.mode == "field" else \
        atlas_uv_of(surface, atlas, face, bary)
    colors = np.empty((len(face), 3), np.float32)
    with torch.no_grad():
        for start in range(0, len(face), 1 << 18):
            chunk = slice(start, start + (1 << 18))
            delta = field(torch.from_numpy(where[chunk].astype(np.float32)).to(device))
            colors[chunk] = torch.sigmoid(torch.from_numpy(logit(base[chunk])).to(device) + delta).cpu().numpy()
    texture = np.zeros((request.texture_size, request.texture_size, 3), np.float32)
    texture[texel_map.mask] = colors
    return pad(texture, texel_map.mask), texel_map


def preview_picture(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: np.ndarray,
                    size: int = PREVIEW_SIZE) -> Image.Image:
    """Four views (front, right, back, left, from 25° above) of the textured model, lightly shaded, on white."""
    normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
    base = cameras(vertices, 1)[0]
    tiles = []
    for azimuth in np.radians([30, 120, 210, 300]):
        direction = np.array([np.sin(azimuth) * np.cos(0.44), np.sin(0.44), np.cos(azimuth) * np.cos(0.44)])
        camera = Camera(direction, base.centre, base.radius)
        fragments = camera.rasterize(vertices, faces, size)
        face, bary = fragments.face[fragments.mask], fragments.bary[fragments.mask].astype(np.float64)
        colors = sample(texture, np.einsum("nk,nkd->nd", bary, uv[faces[face]]))
        shade = 0.45 + 0.55 * np.abs(normals[face] @ direction)
        tile = np.ones((size, size, 3), np.float32)
        tile[fragments.mask] = colors * shade[:, None]
        tiles.append(tile)
    grid = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    return Image.fromarray(np.round(grid * 255).astype(np.uint8), "RGB")
