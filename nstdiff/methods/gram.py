"""Gram-matrix optimisation (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional Neural Networks").

The output image x is optimised directly so that its deep features match the content's (`FeatureContentLoss`) and its
feature correlations match the styles' (`GramStyleLoss`; or, with `style_loss="mrf"`, its feature patches match their
nearest style patches: `MRFStyleLoss`, Li & Wand 2016), with a total-variation smoother. To reach large outputs
within memory and time it runs coarse-to-fine: each pyramid level starts from the upsampled result of the one below.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from nstdiff.context import RunContext
from nstdiff.errors import InputError
from nstdiff.imageio import load_image
from nstdiff.losses import (STYLE_LAYER_WEIGHTS, STYLE_LAYERS, FeatureContentLoss, GramStyleLoss, gram_matrix,
                            strength_weights, total_variation)
from nstdiff.losses_mrf import MRF_LAYERS, MRFStyleLoss
from nstdiff.methods.base import ImageJob, ImageMethod, TransferOutput, autocast_dtype, to_tensor
from nstdiff.methods.footprint import Footprint, encoder_profile, mrf_search_bytes, optimising_run_bytes
from nstdiff.models.encoders import choose_encoder
from nstdiff.optimise import optimise_image
from nstdiff.pyramid import level_steps, pyramid_sizes, resize, upsample_with_detail
from nstdiff.registry import Capabilities, get_method, register_method
from nstdiff.schema import Frozen, ImageRef, ImageStyleRequest
from nstdiff.settings import Settings

# Memory (footprint.py): autograd keeps ≈ ACTIVATION_FACTOR × the encoder's activations. Peak RSS growth in MB of a
# run in a fresh process (CPU, 2 threads; photo.jpg 256², painting.jpg 384×240; default steps) at a long side of
#   px:                  128   256   384   512   768  1536
#   gram random          227   350   568   637  1144  3048
#   gram random, Adam          258         483              (no L-BFGS history)
#   gram random, 1 level       362         955              (60 steps: a full L-BFGS history at full size)
#   texture random       216   336   539   571  1033
#   gram vgg16           371   627  1065  1337
#   gram vgg16, Adam                      1195
#   texture vgg16        358   606
# needs a factor ≤ 1.47; with 1.6 the estimate before its margin is 4-39% above each point.
ACTIVATION_FACTOR = 1.6


class GramOptions(Frozen):
    # relu2_2 and relu3_1 hold edges and shapes that relu4_2 alone lets the style texture overwrite
    content_layers: list[str] = Field(["relu2_2", "relu3_1", "relu4_2"], min_length=1, max_length=16)
    style_layers: list[str] = Field(list(STYLE_LAYERS), min_length=1, max_length=16)
    style_layer_weights: list[float] | None = Field(
        None, description="One per style layer; default 1 each, but 0.1 for relu4_1 and 0.01 for relu5_1 (deep "
                          "layers damped against a relief-like texture).")
    content_weight: float | None = Field(None, ge=0, le=1e9, description="Raw weight; overrides strength.")
    style_weight: float | None = Field(None, ge=0, le=1e9, description="Raw weight; overrides strength.")
    # 3 damps pixel noise; ≥ 10 blurs strokes away and loses both style and structure
    tv_weight: float = Field(3.0, ge=0, le=1e6, description="Total-variation smoothing.")
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    learning_rate: float = Field(0.02, gt=0, le=1.0, description="Adam step on the [0, 1] pixel scale.")
    init: Literal["content", "noise", "image", "feedforward"] = Field(
        "content", description="Start from the photo, noise, an image, or the feed-forward network's result.")
    init_image: ImageRef | None = None
    pyramid_levels: int | None = Field(None, ge=1, le=6, description="None: auto (coarsest side ≥ 128 px).")
    style_loss: Literal["gram", "mrf"] = Field(
        "gram", description="gram: match feature correlations (Gatys); mrf: match each 3×3 feature patch to its nearest "
                            "style patch (Li & Wand 2016), which keeps blended styles distinct instead of mixed.")
    mrf_layers: list[str] = Field(list(MRF_LAYERS), min_length=1, max_length=8,
                                  description="The layers whose patches style_loss=mrf matches (equal weights).")
    mrf_patches: int = Field(1024, ge=16, le=8192, description="Style patches per style and layer for mrf, on a grid: "
                             "bounds its nearest-neighbour search's time and memory.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="The encoder's arithmetic (losses stay float32): auto = bf16 on CPUs with bf16 kernels and "
                            "on CUDA (about twice as fast per step), fp32 elsewhere.")

    @field_validator("style_layer_weights")
    @classmethod
    def _positive(cls, weights: list[float] | None) -> list[float] | None:
        if weights is not None and (any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError("style layer weights must be ≥ 0 and not all 0")
        return weights


@register_method
class GramMethod(ImageMethod):
    name = "gram"
    title = "Gram optimisation (Gatys)"
    description = "Classic neural style transfer: slow, faithful, any style, any size (coarse-to-fine)."
    options_model = GramOptions
    capabilities = Capabilities(needs_content=False, masks=True, color_controls=True, uses_encoder=True)
    style_masks = True
    default_steps = 150  # ≈ 25-40 s at 256 px on 2 CPU cores; more steps mostly add fine texture

    def check_request(self, request: ImageStyleRequest) -> None:
        super().check_request(request)
        if request.controls.style_masks is not None and self.parse_options(request.options).style_loss == "mrf":
            raise InputError("style masks guide Gram matrices; with style_loss mrf each region already takes the "
                             "patches of its own style. Remove the style masks or use style_loss gram")

    def peak_bytes(self, request: ImageStyleRequest, options: GramOptions, shape: Footprint,
                   settings: Settings) -> float:
        style_layers = options.mrf_layers if options.style_loss == "mrf" else options.style_layers
        layers = [*style_layers, *(options.content_layers if request.content is not None else [])]
        encoder = choose_encoder(request.encoder, settings)[0]
        profile = encoder_profile(encoder, layers)
        peak = optimising_run_bytes(shape, profile, options.pyramid_levels, request.steps or self.default_steps,
                                    options.optimizer, ACTIVATION_FACTOR)
        if options.style_loss == "mrf":
            peak += mrf_search_bytes(shape, encoder, options.mrf_layers, options.mrf_patches)
        return peak

    def transfer(self, job: ImageJob, options: GramOptions, context: RunContext) -> TransferOutput:
        if options.init == "image" and options.init_image is None:
            raise InputError("init='image' needs init_image")
        if options.style_layer_weights is not None and len(options.style_layer_weights) != len(options.style_layers):
            raise InputError(
                f"style_layer_weights has {len(options.style_layer_weights)} values for "
                f"{len(options.style_layers)} style layers; give one per layer"
            )
        encoder = self.encoder(job, context)
        net = encoder.module
        mrf = options.style_loss == "mrf"
        style_layers = options.mrf_layers if mrf else options.style_layers
        net.check_layers([*options.content_layers, *style_layers])
        content_weight, style_weight = strength_weights(job.strength)
        content_weight = options.content_weight if options.content_weight is not None else content_weight
        style_weight = options.style_weight if options.style_weight is not None else style_weight
        if job.content is None:
            content_weight = 0.0  # texture synthesis
        if mrf:
            layer_weights = [1.0] * len(style_layers)  # Li & Wand weigh their patch layers equally
        else:
            layer_weights = options.style_layer_weights or [STYLE_LAYER_WEIGHTS.get(l, 1.0) for l in style_layers]
        dtype = autocast_dtype(options.precision, context.device, cuda_auto=torch.bfloat16)
        total_layer_weight = sum(layer_weights)
        layer_weights = {l: w / total_layer_weight for l, w in zip(style_layers, layer_weights)}

        sizes = pyramid_sizes(job.height, job.width, options.pyramid_levels)
        steps = level_steps(job.steps or self.default_steps, len(sizes))
        total_steps, done = sum(steps), 0
        generator = torch.Generator().manual_seed(job.seed)
        image = self._initial_image(job, options, sizes[0], generator, context)
        losses: dict[str, float] = {}
        for (height, width), level_step_count in zip(sizes, steps):
            if job.content is not None and options.init != "noise":
                image = upsample_with_detail(image, job.content, height, width)
            else:
                image = resize(image, height, width).detach()
            factor = max(height, width) / max(job.height, job.width)  # by the long side: a 20000×1 image stays cheap
            content_loss = None
            if job.content is not None and content_weight > 0:
                with torch.no_grad():
                    targets = net(resize(job.content, height, width), options.content_layers)
                content_loss = FeatureContentLoss(targets)
            with torch.no_grad():
                style_targets = {layer: [] for layer in style_layers}  # a Gram matrix, or the features for mrf
                for style, style_mask in zip(job.styles, job.style_masks or [None] * len(job.styles)):
                    sh, sw = style.shape[-2:]
                    scaled = resize(style, max(16, round(sh * factor)), max(16, round(sw * factor)))
                    for layer, feature in net(scaled, style_layers).items():
                        if mrf:  # (style masks are refused with mrf: `check_request`)
                            style_targets[layer].append(feature)
                            continue
                        # a style mask guides the style's Gram too (Gatys et al. 2017 §4: sky matched to sky)
                        guide = None if style_mask is None else F.interpolate(
                            style_mask[None, None], size=feature.shape[-2:], mode="area")[0, 0]
                        style_targets[layer].append(gram_matrix(feature, guide))
            regions = job.regions.at(height, width).styles.to(image) if job.regions is not None else None
            if mrf:
                style_loss = MRFStyleLoss(style_targets, layer_weights, regions, job.style_weights, options.mrf_patches)
            else:
                style_loss = GramStyleLoss(style_targets, layer_weights, regions, job.style_weights)
            layers = [*style_layers, *(options.content_layers if content_loss else [])]

            def objective() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
                with torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
                    # channels-last spares the CPU's convolution kernels a layout change per layer
                    features = net(image.contiguous(memory_format=torch.channels_last), layers)
                features = {layer: feature.float() for layer, feature in features.items()}
                parts = {"style": style_weight * style_loss(features), "tv": options.tv_weight * total_variation(image)}
                if content_loss is not None:
                    parts["content"] = content_weight * content_loss(features)
                if job.extra_loss is not None:
                    parts["extra"] = job.extra_loss(image)
                return sum(parts.values()), parts

            done, losses = optimise_image(image, objective, options.optimizer, options.learning_rate,
                                          level_step_count, context, done, total_steps)
            image = image.detach().clamp(0, 1)
        context.notes.append(f"gram: encoder in {str(dtype or torch.float32).removeprefix('torch.')}")
        return TransferOutput(image=image, losses=losses, encoder=encoder.name, options=options)

    def _initial_image(self, job, options, size, generator, context) -> torch.Tensor:
        height, width = size
        if options.init == "feedforward" and job.content is not None:  # refine the instant result
            first = get_method("feedforward")
            start = first.transfer(replace(job, strength=1.0), first.parse_options({}), context).image
            context.notes.append("gram: started from the feed-forward result")
            return resize(start.to(context.device), height, width).detach()
        if options.init == "image":
            image = to_tensor(load_image(options.init_image, "init", context.settings), context.device)
            return resize(image, height, width)
        if options.init == "content" and job.content is not None:
            return resize(job.content, height, width).clone()
        # noise around mid-grey: texture synthesis and init='noise'
        noise = 0.5 + 0.1 * torch.randn((1, 3, height, width), generator=generator)
        return noise.clamp(0, 1).to(context.device)
