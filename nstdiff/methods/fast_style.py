"""`fast-style`: a network you trained for one painting (`nstdiff fast train`), one pass like `feedforward`.

Each network in the library is Johnson, Alahi & Fei-Fei 2016's per-style feed-forward network, made by fine-tuning
Magenta's arbitrary-style transformer T(c, S) (Ghiasi et al. 2017) together with its own learnt style vector S on one
painting (`nstdiff.training.fast_style`). Rendering is y = T(c, S): no style image, no optimisation.

Strength is Ghiasi et al.'s interpolation in style space, as in `feedforward`: S' = t·S + (1 − t)·S_c, with S_c the
photo's own vector from Magenta's predictor; left unset it is 1, the balance of style and content the network was
trained for. Colour is kept by the core (luminance: the network renders the grey photo and the photo's chroma goes
back on; original: the chroma alone); `histogram` recolours style images, and here the painting is baked in.
"""
from __future__ import annotations

import torch
from pydantic import Field

from nstdiff.context import RunContext
from nstdiff.errors import InputError
from nstdiff.methods.base import ImageJob, ImageMethod, TransferOutput
from nstdiff.methods.footprint import Footprint
from nstdiff.models.magenta_run import (MIN_SIDE, NetworkOptions, load_fast_style_network, network_dtype,
                                        render_peak_bytes, resample)
from nstdiff.registry import Capabilities, register_method
from nstdiff.schema import ImageStyleRequest, PreserveColor
from nstdiff.settings import Settings
from nstdiff.training.fast_style_data import NETWORK_FILE, get_network


class FastStyleOptions(NetworkOptions):
    network: str | None = Field(None, max_length=64, description="Your trained network's name (`nstdiff fast list`).")


@register_method
class FastStyleMethod(ImageMethod):
    name = "fast-style"
    title = "My fast style network"
    description = "A network you trained for one painting (nstdiff fast train): one pass, no style image."
    options_model = FastStyleOptions
    capabilities = Capabilities(needs_content=True, color_controls=True, style_images="unused")

    def check_request(self, request: ImageStyleRequest) -> None:
        super().check_request(request)
        if request.controls.preserve_color is PreserveColor.histogram:
            raise InputError("a trained network has its painting's colours built in, so 'histogram' cannot recolour "
                             "them; use preserve_color luminance or original")

    def peak_bytes(self, request: ImageStyleRequest, options: FastStyleOptions, shape: Footprint,
                   settings: Settings) -> float:
        return render_peak_bytes(shape.pixels)  # the same transformer as feedforward

    def transfer(self, job: ImageJob, options: FastStyleOptions, context: RunContext) -> TransferOutput:
        info = get_network(options.network or "", context.settings)  # a request without one is refused earlier
        dtype = network_dtype(options.precision, context.device)
        network = load_fast_style_network(info.folder / NETWORK_FILE, context.device, dtype)
        strength = 1.0 if job.strength_is_default else job.strength
        height, width = (max(MIN_SIDE, round(side / job.style_scale)) for side in (job.height, job.width))
        content = resample(job.content, height, width).to(dtype)
        with torch.inference_mode():
            vector = network.embedding
            if strength < 1:
                from nstdiff.models.magenta import load_magenta, style_vector

                predictor, _ = load_magenta(context.settings, context.device, dtype, context.message)
                vector = strength * vector + (1 - strength) * style_vector(predictor, job.content)
            image = network(content, vector).float()
            context.step(1, 1, stage="render")
        image = resample(image, job.height, job.width)
        context.notes.append(f"fast-style: network '{info.name}' ({info.painting}, {info.steps} steps at "
                             f"{info.resolution} px), strength {strength:g}, {width}x{height} px")
        return TransferOutput(image=image.clamp(0, 1), encoder=f"fast-style:{info.name}", options=options)
