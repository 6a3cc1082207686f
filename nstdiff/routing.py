"""`method=auto` and `method=diffusion`: which registered method a request goes to, and why.

auto: a text style (prompt or preset) without a style image → diffusion-text when its model is on disk; else the
words are matched to the style library (`nstdiff/library/`) and its painting runs the classic way below (the notes
and the result's `library` parameter name it); a style image → diffusion-reference when a diffusion model and its
IP-Adapter are ready locally and a GPU is present; else, by `quality`, the feed-forward network (fast), or its result
refined by Gram optimisation at full size: 40 steps (balanced) or 80 at a gentler strength (best) — the feed-forward
start only where its weights can be had, else Gram from the photo.
diffusion: diffusion-reference with a style image, diffusion-text without. The reason goes into the result's notes.
"""
from __future__ import annotations

from typing import Any

from nstdiff.errors import InputError
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings

ROUTED = ("auto", "diffusion")
# What `quality` means for a classic run: (method, its options, steps, strength unless the person set one), picked
# with benchmarks/quality_benchmark.py. From the feed-forward start, Gram steps bring the result closer to the
# painting's VGG statistics while both style_sim and SSIM drift down past ~40 steps; best spends 80 at strength 0.6
# (the start already carries the painting), a coarse level first lost SSIM (0.457) to the peer (0.475).
CLASSIC_QUALITY = {"fast": ("feedforward", {}, None, None),
                   "balanced": ("gram", {"init": "feedforward", "pyramid_levels": 1}, 40, None),
                   "best": ("gram", {"init": "feedforward", "pyramid_levels": 1}, 80, 0.6)}


def route(request: ImageStyleRequest, settings: Settings) -> tuple[str, str, dict[str, Any]]:
    """(method name, reason, request fields to set unless the request sets them) for a request whose method is one
    of `ROUTED`."""
    if request.method == "diffusion":
        if request.styles:
            return "diffusion-reference", "method diffusion → diffusion-reference (a style image was given)", {}
        return "diffusion-text", "method diffusion → diffusion-text (a text style was given)", {}
    if not request.styles:
        chosen = request.options.get("library")
        if chosen is None:
            ready, why_not = text_ready(request.options.get("model") or settings.diffusion_family, settings)
            if ready:
                return "diffusion-text", "method auto → diffusion-text (a text style, no style image)", {}
        from nstdiff.library.route import library_route

        return library_route(request, settings, f"the painting '{chosen}' was chosen" if chosen else why_not,
                             classic_choice)
    ready, why_not = reference_ready(request.options.get("model") or settings.diffusion_family, settings)
    if ready and request.controls.style_masks is not None:
        ready, why_not = False, "masks on the style images are read by the Gram method only"
    if ready:
        return "diffusion-reference", "method auto → diffusion-reference (a style image, a GPU and a ready model)", {}
    diffusion_only = [name for name in ("preset", "model", "negative_prompt", "guidance", "structure", "fast", "loras")
                      if name in request.options]
    if request.prompt is not None or diffusion_only:
        asked = "a text prompt" if request.prompt is not None else f"diffusion options ({', '.join(diffusion_only)})"
        raise InputError(f"a style image with {asked} needs diffusion-reference, which cannot run here: {why_not}. "
                         "Drop them to use the classic Gram method.")
    method, options, steps, strength, missing = classic_choice(request, settings)
    if missing:
        why_not += f"; {missing}"
    fields: dict[str, Any] = {"options": {**options, **request.options}} if options else {}
    if steps is not None and request.steps is None:
        fields["steps"] = steps
    if strength is not None and "strength" not in request.controls.model_fields_set:
        fields["controls"] = request.controls.model_copy(update={"strength": strength})
    return method, f"method auto → {method} (quality {request.quality}; diffusion-reference not used: {why_not})", \
        fields


def feedforward_available(settings: Settings) -> bool:
    from nstdiff.models import model_status

    return settings.downloads_allowed or model_status("magenta-arbitrary", settings).ready


def classic_choice(request: ImageStyleRequest, settings: Settings) -> tuple[str, dict[str, Any], int | None,
                                                                          float | None, str]:
    """What `quality` picks for a classic run with a style image: (method, options, steps, strength, a note when the
    feed-forward weights cannot be had)."""
    method, options, steps, strength = CLASSIC_QUALITY[request.quality]
    if request.controls.style_masks is not None:  # only the Gram method reads masks on the style images
        return "gram", {}, steps or CLASSIC_QUALITY["balanced"][2], None, \
            "masks on the style images are read by the Gram method only"
    if feedforward_available(settings):
        return method, options, steps, strength, ""
    steps = CLASSIC_QUALITY["balanced"][2] if request.quality != "best" else None
    return "gram", {}, steps, None, "the feed-forward weights are not on disk and downloads are off"


def text_ready(model: str, settings: Settings) -> tuple[bool, str]:
    """Whether diffusion-text can run with `model` (a family, a folder or a repo id) without a download, and if not,
    why. A folder or a repository named outright counts as ready: the person asked for that model."""
    from nstdiff.models.diffusion_catalogue import load_catalogue
    from nstdiff.models.diffusion_hub import locally_available

    if model not in load_catalogue().families:
        return True, ""
    if not locally_available(model, settings):
        return False, f"no diffusion model: {model} is not downloaded (`nstdiff models fetch {model}`)"
    return True, ""


def reference_ready(family: str, settings: Settings) -> tuple[bool, str]:
    """Whether diffusion-reference can run now with `family` without a download, and if not, why."""
    from nstdiff.context import pick_device

    if pick_device(settings.device).type != "cuda":
        return False, "no GPU"
    from nstdiff.models.diffusion_catalogue import load_catalogue
    from nstdiff.models.diffusion_hub import locally_available

    known = load_catalogue().families.get(family)
    if known is None or known.ip_adapter is None:
        return False, f"{family} has no IP-Adapter in the catalogue"
    for part in (family, f"{family}-ip-adapter"):
        if not locally_available(part, settings):
            return False, f"{part} is not downloaded (`nstdiff models fetch {part}`)"
    return True, ""
