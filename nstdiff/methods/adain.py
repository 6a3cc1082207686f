"""AdaIN: Adaptive Instance Normalization (Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time").

    AdaIN(x, y) = σ(y) · (x − μ(x)) / σ(x) + μ(y)

per channel, over positions: the content features take the style features' mean and standard deviation. With a
decoder trained for the encoder, one forward pass gives the image, T = Σ_s w_s AdaIN(f(c), f(s)) blended with f(c)
by α, out = g(α T + (1 − α) f(c)) (§7: content-style trade-off, style interpolation, spatial control). That pass
is fast only with a trained decoder: one made by `nstdiff adain train`, or the paper's (for `vgg19-normalised`).

Without a decoder (e.g. for the offline `vgg16`) the image itself is optimised so that its features match the same
AdaIN targets at several layers: L = Σ_l ‖f_l(x) − T_l‖² / ‖T_l‖², with a total-variation smoother. AdaIN thus always
runs; the result's notes say which variant did.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from nstdiff.context import RunContext
from nstdiff.losses import FeatureContentLoss, total_variation
from nstdiff.methods.base import ImageJob, ImageMethod, TransferOutput, autocast_dtype
from nstdiff.methods.footprint import Footprint, encoder_profile, inference_bytes, optimising_run_bytes
from nstdiff.models.decoders import AdaINDecoder, choose_decoder, decoder_on_disk, public_decoder_ready
from nstdiff.models.encoders import choose_encoder
from nstdiff.models.vgg import VGGEncoder
from nstdiff.optimise import optimise_image
from nstdiff.pyramid import level_steps, pyramid_sizes, resize, upsample_with_detail
from nstdiff.registry import Capabilities, register_method
from nstdiff.schema import Frozen, ImageStyleRequest
from nstdiff.settings import Settings

DECODER_LAYER = "relu4_1"
# Memory (footprint.py): autograd keeps ≈ ACTIVATION_FACTOR × the encoder's activations. Peak RSS growth in MB of a
# run in a fresh process (CPU, 2 threads; photo.jpg 256², painting.jpg 384×240; default steps) at a long side of
#   px:                   128   256   384   512   768  1024  2048
#   adain random          211   271   378   469   820              (optimisation variant)
#   adain vgg16                 491         948
#   decoder random              117         178        378  1042   (bf16 autocast; fp32 needs less)
#   decoder vgg16               240         484   776  1046
# needs a factor ≤ 1.22 (optimisation) and an INFERENCE_FACTOR ≤ 2.97 (decoder); the estimate before its margin is
# 3-132% above each point (the most at small sizes, where RUNTIME_BYTES dominates).
ACTIVATION_FACTOR = 1.3


class AdaINOptions(Frozen):
    variant: Literal["auto", "decoder", "optimise"] = Field(
        "auto", description="decoder: one forward pass with a trained decoder; optimise: no decoder needed; auto: the "
                            "decoder when one is on disk (or the paper's can be fetched now), else optimise.")
    alpha: float | None = Field(None, ge=0, le=1, description="Content/style trade-off; None = the strength control.")
    decoder: Path | None = Field(None, description="A decoder file; default: the one trained for the encoder.")
    layers: list[str] = Field(["relu1_1", "relu2_1", "relu3_1", "relu4_1"], min_length=1, max_length=16,
                              description="Layers whose statistics the optimisation variant matches.")
    style_weight: float = Field(10.0, ge=0, le=1e6, description="Style-statistics weight (optimisation variant).")
    tv_weight: float = Field(3.0, ge=0, le=1e6, description="Total-variation smoothing (optimisation variant).")
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    learning_rate: float = Field(0.02, gt=0, le=1.0, description="Adam step (optimisation variant).")
    pyramid_levels: int | None = Field(None, ge=1, le=6, description="Coarse-to-fine levels of the optimisation "
                                       "variant; None: auto (coarsest side ≥ 128 px).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="The encoder's and decoder's arithmetic: auto = bf16 on CPUs that have it, fp16 (decoder) "
                            "or bf16 (optimisation) on CUDA; about twice as fast, statistics stay float32.")


def mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    flat = features.flatten(2)
    return flat.mean(2)[..., None, None], (flat.var(2, unbiased=False) + eps).sqrt()[..., None, None]


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """σ(style)·(content − μ(content))/σ(content) + μ(style), per channel."""
    content_mean, content_std = mean_std(content)
    style_mean, style_std = mean_std(style)
    return (content - content_mean) / content_std * style_std + style_mean


def adain_target(content: torch.Tensor, styles: list[torch.Tensor], weights: list[float], alpha: float,
                 regions: torch.Tensor | None) -> torch.Tensor:
    """α Σ_s w_s AdaIN(c, s_s) + (1 − α) c; with region masks (S, H, W) each style only where its mask is."""
    stylized = [adain(content, style) for style in styles]
    if regions is None:
        target = sum(w * t for w, t in zip(weights, stylized))
    else:
        masks = F.interpolate(regions[None], size=content.shape[-2:], mode="area")[0]
        keep = (1 - masks.sum(0)).clamp(0, 1)
        target = sum(m * t for m, t in zip(masks, stylized)) + keep * content
    return alpha * target + (1 - alpha) * content


def public_pair(encoder: str, options: AdaINOptions, settings: Settings) -> str | None:
    """The encoder to use instead of `auto` because its public decoder is ready: the paper's own encoder + decoder
    pair beats optimising with another encoder. None keeps the request's."""
    wants_auto = encoder == "auto" and settings.default_encoder == "auto"
    if wants_auto and options.variant != "optimise" and options.decoder is None:
        return public_decoder_ready(settings)
    return None


def expected_variant(options: AdaINOptions, encoder: str, settings: Settings) -> str:
    """The variant to size memory for: auto counts only a decoder on disk, since a fetch may fail and then the run
    optimises (which needs more memory)."""
    if options.variant != "auto":
        return options.variant
    return "decoder" if options.decoder is not None or decoder_on_disk(encoder, settings) else "optimise"


@register_method
class AdaINMethod(ImageMethod):
    name = "adain"
    title = "AdaIN (Huang & Belongie)"
    description = ("Arbitrary style transfer: one pass with a trained decoder (when one is on disk), else a short "
                   "optimisation.")
    options_model = AdaINOptions
    capabilities = Capabilities(needs_content=True, masks=True, color_controls=True, uses_encoder=True)
    default_steps = 50  # ≈ 10-12 s at 256 px on 2 CPU cores with vgg16 (coarse-to-fine)

    def peak_bytes(self, request: ImageStyleRequest, options: AdaINOptions, shape: Footprint,
                   settings: Settings) -> float:
        encoder = choose_encoder(public_pair(request.encoder, options, settings) or request.encoder, settings)[0]
        if expected_variant(options, encoder, settings) == "decoder":
            profile = encoder_profile(encoder, [DECODER_LAYER])
            return shape.fixed_bytes(profile) + inference_bytes(max([shape.pixels, *shape.style_pixels]), profile)
        return optimising_run_bytes(shape, encoder_profile(encoder, [*options.layers, DECODER_LAYER]),
                                    options.pyramid_levels, request.steps or self.default_steps, options.optimizer,
                                    ACTIVATION_FACTOR)

    def transfer(self, job: ImageJob, options: AdaINOptions, context: RunContext) -> TransferOutput:
        preferred = public_pair(job.encoder, options, context.settings)
        if preferred:
            job = replace(job, encoder=preferred)
            context.notes.append(f"encoder auto → {preferred} (its AdaIN decoder is ready)")
        encoder = self.encoder(job, context)
        net = encoder.module
        alpha = job.strength if options.alpha is None else options.alpha
        decoder = choose_decoder(options.variant, options.decoder, encoder.name, net.width_divisor, context.settings,
                                 context.message)
        regions = job.regions.styles.to(job.content) if job.regions is not None else None
        if isinstance(decoder, str):  # why there is no decoder
            variant = "optimise"
            image, losses = self._optimise(net, job, options, alpha, regions, context)
            context.notes.append(f"adain variant: optimise ({job.steps or self.default_steps} steps; {decoder})")
        else:
            variant, losses = "decoder", {}
            image = self._decode(net, *decoder, job, options, alpha, regions, context)
        resolved = options.model_copy(update={"variant": variant, "alpha": alpha})
        return TransferOutput(image=image, losses=losses, encoder=encoder.name, options=resolved)

    def _decode(self, net: VGGEncoder, decoder: AdaINDecoder, path: Path, job, options, alpha, regions,
                context) -> torch.Tensor:
        decoder = decoder.to(context.device)
        dtype = autocast_dtype(options.precision, context.device)
        context.notes.append(f"adain variant: decoder ({path.name}, {str(dtype or torch.float32).split('.')[-1]})")

        def encode(image: torch.Tensor) -> torch.Tensor:
            # channels-last lets the CPU's convolution kernels skip a layout change per layer
            return net(image.contiguous(memory_format=torch.channels_last), [DECODER_LAYER])[DECODER_LAYER].float()

        with torch.inference_mode(), torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
            content = encode(job.content)
            styles = [encode(style) for style in job.styles]
            with torch.autocast(context.device.type, enabled=False):  # statistics in float32
                target = adain_target(content, styles, job.style_weights, alpha, regions)
            image = decoder(target).float()
        context.step(1, 1)
        if image.shape[-2:] != (job.height, job.width):  # the encoder's pooling floors odd sizes
            image = F.interpolate(image, size=(job.height, job.width), mode="bilinear", align_corners=False)
        return image.clamp(0, 1)

    def _optimise(self, net: VGGEncoder, job, options, alpha, regions, context):
        net.check_layers(options.layers)
        layers = sorted({*options.layers, DECODER_LAYER})
        sizes = pyramid_sizes(job.height, job.width, options.pyramid_levels)
        steps = level_steps(job.steps or self.default_steps, len(sizes))
        total_steps, done, losses = sum(steps), 0, {}
        image = resize(job.content, *sizes[0]).clone()
        for (height, width), level_step_count in zip(sizes, steps):
            image = upsample_with_detail(image, job.content, height, width)
            objective = self._objective(net, job, options, alpha, regions, layers, height, width, image, context.device)
            done, losses = optimise_image(image, objective, options.optimizer, options.learning_rate,
                                          level_step_count, context, done, total_steps)
            image = image.detach().clamp(0, 1)
        return image, losses

    @staticmethod
    def _objective(net, job, options, alpha, regions, layers, height, width, image, device):
        """The AdaIN loss at one pyramid level: content = AdaIN target at relu4_1, style = the styles' statistics
        (styles scaled like the content, so stroke size holds across levels)."""
        factor = max(height, width) / max(job.height, job.width)  # by the long side, as in gram
        with torch.no_grad():
            content = net(resize(job.content, height, width), [DECODER_LAYER])[DECODER_LAYER]
            styles = []
            for style in job.styles:
                sh, sw = style.shape[-2:]
                styles.append(net(resize(style, max(16, round(sh * factor)), max(16, round(sw * factor))), layers))
            target = adain_target(content, [s[DECODER_LAYER] for s in styles], job.style_weights, alpha, regions)
            style_stats = {layer: [sum(w * stat for w, stat in zip(job.style_weights, pair))
                                   for pair in zip(*(mean_std(s[layer]) for s in styles))] for layer in options.layers}
        content_loss = FeatureContentLoss({DECODER_LAYER: target})

        def statistics_loss(features):  # the AdaIN paper's style loss, normalised per layer
            total = 0.0
            for layer, (mean, std) in style_stats.items():
                x_mean, x_std = mean_std(features[layer])
                total = total + ((x_mean - mean).square().sum() + (x_std - std).square().sum()) / (
                    mean.square().sum() + std.square().sum())
            return total / len(style_stats)

        dtype = autocast_dtype(options.precision, device, cuda_auto=torch.bfloat16)

        def objective():  # the encoder in half precision where it is fast, the statistics and losses in float32
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                features = net(image.contiguous(memory_format=torch.channels_last), layers)
            features = {layer: feature.float() for layer, feature in features.items()}
            parts = {"content": content_loss(features), "style": options.style_weight * alpha * statistics_loss(features),
                     "tv": options.tv_weight * total_variation(image)}
            return sum(parts.values()), parts

        return objective
