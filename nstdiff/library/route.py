"""A style in words without a diffusion model: the words are matched to the style library and its best painting runs
the classic way (routing's `classic_choice`, passed in by it: the feed-forward network, refined by Gram steps as
`quality` says; Gram texture synthesis without a photo). The notes say which painting, why, and the next two; the
result's parameters keep them under `library` (the executor puts them there: a request has no such field).
"""
from __future__ import annotations

from typing import Any, Callable

from nstdiff.errors import InputError
from nstdiff.library.catalogue import get_painting
from nstdiff.library.matching import Match, match, no_match_message
from nstdiff.schema import ImageStyleRequest, StyleImage
from nstdiff.settings import Settings

# options a text style may carry that mean nothing without diffusion and are left out without a word
SILENT = frozenset({"model", "preset", "library"})
# (method, options, steps, strength, note) for a classic run of a request with a photo, by its quality
ClassicChoice = Callable[[ImageStyleRequest, Settings], tuple[str, dict[str, Any], int | None, float | None, str]]


def library_route(request: ImageStyleRequest, settings: Settings, why_not: str,
                  classic_choice: ClassicChoice) -> tuple[str, str, dict[str, Any]]:
    """(method, reason, request fields + "library") for a text style that diffusion cannot take (`why_not`)."""
    from nstdiff.registry import get_method

    options = dict(request.options)
    chosen = options.get("library")
    if options.get("loras"):
        raise InputError(f"your LoRAs need diffusion-text, which cannot run here ({why_not}); fetch the model, or "
                         "leave the LoRAs out to have the words matched to a painting of the style library")
    words = " ".join(str(part) for part in (request.prompt, options.get("preset")) if part)
    matches = match(words, k=3, settings=settings) if words else []
    if chosen is not None:
        best = Match(get_painting(str(chosen), settings), 0.0, "chosen by name")
        others = [m for m in matches if m.painting.id != best.painting.id][:2]
    elif not matches:
        raise InputError(f"{no_match_message(words, settings)}. (Words go to the style library here because "
                         f"{why_not}.)")
    else:
        best, others = matches[0], matches[1:3]
    if request.content is None:  # a new image: a texture grown from the painting
        method, classic, steps, strength, missing = "gram", {}, None, None, ""
    else:
        method, classic, steps, strength, missing = classic_choice(request, settings)
    accepted = get_method(method).options_model.model_fields
    kept = {name: value for name, value in options.items() if name in accepted}
    ignored = sorted(name for name, value in options.items() if name not in accepted and name not in SILENT
                     and value not in (None, False, "", "none", []))
    fields: dict[str, Any] = {"styles": [StyleImage(image=best.painting.path)], "prompt": None,
                              "options": {**classic, **kept}}
    if steps is not None and request.steps is None:
        fields["steps"] = steps
    if strength is not None and "strength" not in request.controls.model_fields_set:
        fields["controls"] = request.controls.model_copy(update={"strength": strength})
    how = f"quality {request.quality}" if request.content is not None else "a texture grown from the painting"
    reason = (f"method auto → {method} ({how}; the words were matched to the style library because {why_not}"
              + (f"; {missing}" if missing else "") + ")")
    said = f" for '{words}'" if words else ""
    note = f"style library: {best.painting.label}{said} — {best.why}"
    if others:
        note += "; next best: " + ", ".join(f"{m.painting.label} (library id {m.painting.id})" for m in others)
    if ignored:
        note += f"; not used without diffusion: {', '.join(ignored)}"
    fields["library"] = {"painting": best.painting.summary(), "words": words, "why": best.why, "because": why_not,
                         "alternatives": [{**m.painting.summary(), "why": m.why} for m in others], "note": note}
    return method, reason, fields
