"""Turning form values into typed requests, and typed models into widget settings. No Gradio, no torch: testable."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import numpy as np
from PIL import Image
from pydantic import BaseModel, ValidationError

from nstdiff.errors import InputError, format_validation_error
from nstdiff.schema import Controls, ImageStyleRequest, MethodInfo

ENCODERS = ["auto", "vgg19", "vgg16", "vgg19-normalised", "random"]


def bounds(model: type[BaseModel], name: str) -> dict[str, Any]:
    """minimum/maximum/value/info for a slider, read from a field's constraints and description."""
    info = model.model_fields[name]
    out: dict[str, Any] = {"value": info.default, "info": info.description or None}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            out["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            out["maximum"] = item.le
    return out


def parse_weights(text: str | None, count: int) -> list[float]:
    if not text or not text.strip():
        return [1.0] * count
    try:
        weights = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise InputError(f"blend weights '{text}' should be numbers separated by commas, like 0.7, 0.3") from None
    if len(weights) != count:
        raise InputError(f"{len(weights)} blend weights for {count} style images; give one per style image")
    return weights


def painted_mask(editor_value: dict | None, tmp_dir: Path, name: str = "painted_mask.png",
                 unpainted: tuple[int, int, int] = (255, 255, 255), size: tuple[int, int] | None = None) -> Path | None:
    """The mask painted in an image editor, as the PNG `tmp_dir / name` (scaled to `size`, width × height, if given):
    painted pixels keep their colour, unpainted ones get `unpainted` (the content mask: white, style 1; a style
    image's mask: black, "not from here"). None when nothing is painted."""
    if not editor_value or not editor_value.get("layers"):
        return None
    layers = [np.asarray(layer) for layer in editor_value["layers"] if layer is not None]
    if not layers or all(layer.shape[-1] == 4 and not layer[..., 3].any() for layer in layers):
        return None
    height, width = layers[0].shape[:2]
    mask = np.empty((height, width, 3), np.uint8)
    mask[:] = unpainted
    for layer in layers:
        if layer.shape[-1] == 4:
            painted = layer[..., 3] > 127
            mask[painted] = layer[..., :3][painted]
    image = Image.fromarray(mask)
    if size is not None and image.size != tuple(size):
        image = image.resize(size, Image.Resampling.NEAREST)  # a mask stays two-toned
    path = tmp_dir / name
    image.save(path)
    return path


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def image_request(
    *, method: str, content: str | None, styles: list[str], weights: str | None, size: int, steps: int | None,
    seed: int | None, encoder: str, strength: float, preserve_color: str, style_scale: float,
    mask: str | Path | None = None, options: dict[str, Any] | None = None, prompt: str | None = None,
    quality: str | None = None, words: dict[str, Any] | None = None,
) -> ImageStyleRequest:
    """Build and validate a request from form values; a bad value raises `InputError` naming the field. `quality`
    (fast, balanced, best: what method auto does without a GPU) None = the request's default; `words`: the mask-from-
    words and style-mask fields of `Controls`."""
    if not styles and not (prompt or "").strip() and not (options or {}).get("preset"):
        raise InputError("add at least one style image (or describe a style in words in the Text style tab)")
    blend = parse_weights(weights, len(styles))
    controls: dict[str, Any] = {"strength": strength, "style_scale": style_scale}
    if content:
        controls.update(preserve_color=preserve_color, mask=mask, **(words or {}))
    if not all(_finite(v) for v in (size, steps or 0, seed or 0, strength, style_scale)):
        raise InputError("size, steps, seed, strength and style scale must be numbers, not NaN or infinity")
    try:
        return ImageStyleRequest(
            method=method, content=content or None, size=int(size), steps=int(steps) if steps else None,
            seed=int(seed) if seed is not None and seed >= 0 else None, encoder=encoder,
            styles=[{"image": s, "weight": w} for s, w in zip(styles, blend)], controls=Controls(**controls),
            options=options or {}, prompt=prompt, **({"quality": quality} if quality else {}),
        )
    except ValidationError as exc:
        raise InputError(format_validation_error(exc)) from None


@dataclass(frozen=True)
class OptionField:
    """One method option as a form widget, read from the method's options JSON schema (no torch, no Gradio)."""

    method: str
    name: str
    kind: str  # number, integer, choice, boolean, list
    default: Any
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False

    @property
    def key(self) -> str:
        """The form's (and the API's) parameter name, e.g. `adain_alpha`, `diffusion_text_guidance`."""
        return f"{self.method.replace('-', '_')}_{self.name}"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize() + (" (empty = automatic)" if self.nullable else "")

    def form_value(self, value: Any) -> Any:
        """An option's value as the widget shows it (lists as comma-separated text)."""
        if self.kind == "list":
            def one(item: Any) -> str:  # {"name": "ink", "weight": 0.8} (a LoRA) is written as ink:0.8
                return f"{item['name']}:{item['weight']}" if isinstance(item, dict) and "name" in item else str(item)

            return ", ".join(one(v) for v in value) if value else ""
        return value

    def parse(self, value: Any) -> Any:
        """The widget's value as the option's value; None = leave it to the method's default."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if self.kind == "list":
            return [part.strip() for part in str(value).split(",") if part.strip()]
        if self.kind == "integer":
            return int(value)
        return value


def option_fields(method: MethodInfo) -> list[OptionField]:
    """The options of `method` a form can offer: numbers, choices, switches and lists. File paths are left to the
    API and CLI (the app's uploads go through the request's own fields)."""
    fields = []
    for name, spec in method.options_schema.get("properties", {}).items():
        variants = spec.get("anyOf", [spec])
        nullable = any(v.get("type") == "null" for v in variants)
        main = next((v for v in variants if v.get("type") != "null"), {})
        kind = {"number": "number", "integer": "integer", "boolean": "boolean", "array": "list"}.get(main.get("type"))
        if "enum" in main:
            kind = "choice"
        if kind is None or main.get("format") == "path":
            continue
        fields.append(OptionField(
            method=method.name, name=name, kind=kind, default=spec.get("default"),
            description=spec.get("description", ""), minimum=main.get("minimum"), maximum=main.get("maximum"),
            choices=tuple(main.get("enum", ())), nullable=nullable,
        ))
    return fields


def method_options(fields: list[OptionField], method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The options the form sets for `method` (empty widgets left out), keyed by option name."""
    options = {}
    for field in fields:
        if field.method == method:
            value = field.parse(values.get(field.key))
            if value is not None:
                options[field.name] = value
    return options
