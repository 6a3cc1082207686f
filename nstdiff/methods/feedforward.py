"""Feed-forward arbitrary style transfer (Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary
neural artistic stylization network"): one pass of Magenta's trained networks, no optimisation.

A style prediction network maps a painting to a 100-d vector S; a transformer network with conditional instance
normalisation (Dumoulin et al. 2017) renders the photo with it. Strength is the paper's interpolation in that space:
S' = t·S_style + (1 − t)·S_content, where S_content is the photo's own vector (t = 0 gives the network's rendering of
the photo in its own style). Several styles blend by their weights in the same space; with region masks, each
style's rendering is kept where its mask is.

The predictor saw 256² crops and the transformer 256² photos in training. The predictor gets each painting's centre
square resized from the full image (a painting first shrunk to the output size and then enlarged gives a blurred,
weaker vector: style score 0.61 against 0.71 on the benchmark pairs). The transformer is fully convolutional and runs
at any size, where the strokes keep their pixel size; below RENDER_SIDE it renders at RENDER_SIDE and shrinks the result
with an antialiased bicubic filter (at 256 px: style 0.79 / SSIM 0.52 against 0.73 / 0.47 rendered at 256, and the
bilinear filter's 0.77 / 0.54 is softer). `style_scale` divides the render size, so 2.0 gives strokes twice as large.
"""
from __future__ import annotations

import torch

from nstdiff.context import RunContext
from nstdiff.errors import InputError
from nstdiff.methods.base import ImageJob, ImageMethod, TransferOutput
from nstdiff.methods.footprint import Footprint
from nstdiff.models.magenta_run import MIN_SIDE, NetworkOptions, network_dtype, render_peak_bytes, resample
from nstdiff.registry import Capabilities, register_method
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings

RENDER_SIDE = 384  # the size Magenta's release was exported at; smaller outputs are rendered here and shrunk


def blended_vector(vectors: list[torch.Tensor], weights: list[float], content_vector: torch.Tensor | None,
                   strength: float) -> torch.Tensor:
    """Σ w_s S_s / Σ w_s, moved toward the content's own vector by (1 − strength)."""
    total = sum(weights)
    style = sum(w / total * v for w, v in zip(weights, vectors))
    return style if content_vector is None else strength * style + (1 - strength) * content_vector


@register_method
class FeedForwardMethod(ImageMethod):
    name = "feedforward"
    title = "Feed-forward (instant)"
    description = "Magenta's trained arbitrary-style network: any painting, one pass, well under a second on a CPU."
    options_model = NetworkOptions
    capabilities = Capabilities(needs_content=True, masks=True, color_controls=True)

    def peak_bytes(self, request: ImageStyleRequest, options: NetworkOptions, shape: Footprint,
                   settings: Settings) -> float:
        return render_peak_bytes(shape.pixels)

    def transfer(self, job: ImageJob, options: NetworkOptions, context: RunContext) -> TransferOutput:
        from nstdiff.models.magenta import load_magenta, style_vector, stylize_tensor

        if job.content is None:
            raise InputError("the feed-forward method restyles a photo; add a content image")
        dtype = network_dtype(options.precision, context.device)
        predictor, transformer = load_magenta(context.settings, context.device, dtype, context.message)
        render = max(RENDER_SIDE, job.height, job.width) / max(job.height, job.width) / job.style_scale
        height, width = (max(MIN_SIDE, round(side * render)) for side in (job.height, job.width))
        content = resample(job.content, height, width)
        # unset, strength is 1: the network's own balance (0.7, the Gram default, is a weak style in vector space)
        strength = 1.0 if job.strength_is_default else job.strength
        with torch.inference_mode():
            vectors = [style_vector(predictor, style) for style in job.style_crops or job.styles]
            own = style_vector(predictor, job.content) if strength < 1 else None
            context.step(1, 2, stage="predict")
            if job.regions is None:
                renders = [stylize_tensor(transformer, content, blended_vector(vectors, job.style_weights, own,
                                                                               strength))]
            else:  # each style on its own, kept where its mask is
                renders = [stylize_tensor(transformer, content, blended_vector([v], [1.0], own, strength))
                           for v in vectors]
            context.step(2, 2, stage="render")
        renders = [resample(r.float(), job.height, job.width) for r in renders]
        if job.regions is None:
            image = renders[0]
        else:
            masks = job.regions.styles.to(renders[0])
            image = sum(m[None, None] * r for m, r in zip(masks, renders)) + job.regions.keep.to(renders[0]) * job.content
        context.notes.append(f"feedforward: Magenta arbitrary-style network ({str(dtype).removeprefix('torch.')}, "
                             f"{width}x{height} px), strength {strength:g}")
        return TransferOutput(image=image.clamp(0, 1), encoder="magenta-arbitrary", options=options)
