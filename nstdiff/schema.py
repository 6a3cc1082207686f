"""Typed, bounded requests and results: the one contract between the front ends (CLI, API, app) and the core.

A field's bounds and description are what the CLI validates and the app shows; nothing is validated twice elsewhere.
Method-specific settings live in `options`, validated against the chosen method's own options model.
"""
from __future__ import annotations

import json
import time
from abc import abstractmethod
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

MAX_STYLES = 8


def parse_hex(color: str) -> tuple[int, int, int]:
    """'#rrggbb' (the '#' optional) as RGB; a ValueError, which pydantic reports against the field, otherwise."""
    text = color.strip().lstrip("#")
    if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(f"'{color}' is not a hex colour like #ff0000")
    return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))


def _describe_image(value: Any) -> str:
    if isinstance(value, Image.Image):
        return f"<image {value.width}x{value.height}>"
    return str(value)


ImageRef = Annotated[
    Union[Path, Image.Image],
    PlainSerializer(_describe_image, return_type=str),
    Field(description="A path to an image file, or a PIL image (Python API)."),
]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True)


class StyleImage(Frozen):
    image: ImageRef
    weight: float = Field(1.0, gt=0, le=100, description="Blend weight; weights are normalised to sum to 1.")


class PreserveColor(str, Enum):
    none = "none"
    luminance = "luminance"  # transfer on luminance only, colours of the content (Gatys et al. 2017, §5.1)
    histogram = "histogram"  # recolour the style to the content's colour statistics first (Gatys et al. 2017, §5.2)
    original = "original"  # full transfer, then the content's chroma under the output's luminance


MAX_PHRASE_CHARS = 200


def _phrases(phrases: list[str]) -> list[str]:
    cleaned = [p.strip() for p in phrases]
    if any(not p for p in cleaned):
        raise ValueError("a phrase is empty; name the object, e.g. 'sky' or 'the dog'")
    if any(len(p) > MAX_PHRASE_CHARS for p in cleaned):
        raise ValueError(f"a phrase is over {MAX_PHRASE_CHARS} characters; name the object in a few words")
    return cleaned


class RegionPhrase(Frozen):
    """A region of the photo named in words, and the style that paints it."""

    where: list[str] = Field(min_length=1, max_length=8, description="Phrases naming the region, e.g. ['sky', "
                             "'clouds']; the region is their union.")
    style: int = Field(ge=1, le=MAX_STYLES, description="The style that paints it: 1 = the first style image.")

    @field_validator("where")
    @classmethod
    def _clean(cls, phrases: list[str]) -> list[str]:
        return _phrases(phrases)


class Controls(Frozen):
    """Controls shared by every classic method that declares support for them."""

    model_config = ConfigDict(**Frozen.model_config, populate_by_name=True)

    strength: float = Field(0.7, ge=0, le=1, description="0 keeps the content, 1 is all style.")
    preserve_color: PreserveColor = Field(PreserveColor.none, description="How the content's colours are kept.")
    style_scale: float = Field(1.0, ge=0.25, le=2.0, description="Stroke size: >1 larger strokes, <1 finer.")
    mask: ImageRef | None = Field(None, description="Region mask, same size as the content (see mask_colors).")
    mask_colors: list[str] | None = Field(
        None, max_length=MAX_STYLES, description="Hex colour of each style's region; black always means untouched."
    )
    regions: list[RegionPhrase] = Field(default_factory=list, max_length=MAX_STYLES,
                                        description="Regions named in words, each painted by one style; the rest of "
                                        "the photo stays untouched (needs a segmentation model).")
    only: list[str] = Field(default_factory=list, max_length=8,
                            description="Style only what these phrases name, e.g. 'the dog'; the rest stays untouched.")
    except_: list[str] = Field(default_factory=list, max_length=8, alias="except",
                               description="Leave what these phrases name untouched, e.g. 'faces'.")
    mask_threshold: float = Field(0.4, gt=0, lt=1, description="Score (0-1) over which a pixel matches a phrase; "
                                  "lower it when a phrase matches nothing.")
    mask_feather: float = Field(4.0, ge=0, le=64, description="Soft edge of a mask from words, in pixels.")
    style_masks: list[ImageRef | None] | None = Field(
        None, max_length=MAX_STYLES, description="One mask per style image (white = the part to take the style from, "
        "same size as that style image; None = all of it): the content's sky takes the style's sky (Gram method).")

    @field_validator("mask_colors")
    @classmethod
    def _hex(cls, colors: list[str] | None) -> list[str] | None:
        if colors is None:
            return None
        return ["#%02x%02x%02x" % parse_hex(c) for c in colors]  # one spelling, so duplicates are caught

    @field_validator("only", "except_")
    @classmethod
    def _clean_phrases(cls, phrases: list[str]) -> list[str]:
        return _phrases(phrases)

    @model_validator(mode="after")
    def _one_kind_of_mask(self) -> Controls:
        if self.mask is not None and self.uses_words:
            raise ValueError("give either a painted mask or regions named in words (regions, only, except), not both")
        if self.regions and self.only:
            raise ValueError("give either regions (each painted by a style) or only, not both")
        return self

    @property
    def uses_words(self) -> bool:
        return bool(self.regions or self.only or self.except_)

    @property
    def uses_regions(self) -> bool:
        """Whether the styles go to parts of the photo (a painted mask or words) rather than all of it."""
        return self.mask is not None or self.uses_words


MAX_PROMPT_CHARS = 1000


class ImageStyleRequest(Frozen):
    """Restyle `content` with style images and/or a text style, or make a new image when there is no content."""

    method: str = Field("auto", description="A method name (see `nstdiff methods`), or auto: chosen from the inputs.")
    content: ImageRef | None = Field(None, description="The photo to restyle; none = texture synthesis / txt2img.")
    styles: list[StyleImage] = Field(default_factory=list, max_length=MAX_STYLES)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS,
                               description="A text style, e.g. 'ukiyo-e woodblock print' (diffusion "
                               "methods; without a diffusion model, auto matches it to the style library).")
    size: int = Field(512, ge=16, le=4096, description="Longest side of the output, in pixels.")
    steps: int | None = Field(None, ge=1, le=10_000, description="Optimisation / denoising steps; None = the method's.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="None draws a seed, reported in the result.")
    encoder: str = Field("auto", description="Feature encoder: auto (best available), vgg19, vgg16, vgg19-normalised, "
                         "random.")
    controls: Controls = Field(default_factory=Controls)
    options: dict[str, Any] = Field(default_factory=dict, description="Method-specific options (validated by it).")
    quality: Literal["fast", "balanced", "best"] = Field(
        "balanced", description="For method auto with a style image, without a GPU: fast = the feed-forward network "
        "(under a second), balanced = its result refined by a short Gram optimisation, best = a full one.")

    @model_validator(mode="before")
    @classmethod
    def _styles_from_paths(cls, data: Any) -> Any:
        # Allow `styles=["a.jpg", img]` as shorthand for weight-1 styles.
        if isinstance(data, dict) and isinstance(data.get("styles"), (list, tuple)):
            data = dict(data)
            data["styles"] = [
                {"image": s} if isinstance(s, (str, Path, Image.Image)) else s for s in data["styles"]
            ]
        return data

    @field_validator("prompt")
    @classmethod
    def _blank_prompt_is_none(cls, prompt: str | None) -> str | None:
        return prompt.strip() or None if prompt is not None else None

    @model_validator(mode="after")
    def _needs_a_style(self) -> "ImageStyleRequest":
        # a trained network (method fast-style) carries its painting; `library` names one of the style library's
        if not self.styles and self.prompt is None and not any(self.options.get(key) for key in
                                                               ("preset", "network", "library")):
            raise ValueError("give a style: a style image, a text prompt such as 'ukiyo-e woodblock print', a "
                             "preset, a painting of the style library, or a trained network (method fast-style)")
        return self

    @model_validator(mode="after")
    def _regions_match_styles(self) -> ImageStyleRequest:
        controls, count = self.controls, len(self.styles)
        for region in controls.regions:
            if region.style > count:
                raise ValueError(f"region '{', '.join(region.where)}' names style {region.style} but there are "
                                 f"{count} style images")
        unused = sorted(set(range(1, count + 1)) - {r.style for r in controls.regions})
        if controls.regions and unused:
            raise ValueError(f"style {unused[0]} paints no region; give it a region or remove it")
        if controls.style_masks is not None and len(controls.style_masks) != count:
            raise ValueError(f"style_masks has {len(controls.style_masks)} masks for {count} style images; give one "
                             "per style (None for all of it)")
        return self

    @property
    def style_weights(self) -> list[float]:
        total = sum(s.weight for s in self.styles)
        return [s.weight / total for s in self.styles]


class MethodInfo(Frozen):
    """What a front end needs to offer a method: no code, just its description and capabilities."""

    name: str
    title: str
    description: str
    modality: str
    needs_content: bool
    masks: bool
    color_controls: bool
    needs_gpu: bool
    uses_encoder: bool
    style_images: str
    prompt: str
    options_schema: dict[str, Any]


class ProgressEvent(Frozen):
    step: int
    total: int
    stage: str = "optimise"
    losses: dict[str, float] = Field(default_factory=dict)
    elapsed: float = 0.0
    message: str = ""
    level: int = Field(0, description="Which pass of the run (a pyramid level): steps of one level take alike time.")
    preview: bytes | None = Field(None, description="A PNG (longest side ≤ 256 px) of the image being worked on, "
                                  "at most every `RunContext.preview_every` seconds.")


class RunResult(BaseModel):
    """What a run produced and exactly how: enough to reproduce it. One subclass per modality (image, audio, mesh)
    says how its output is written; the store, the CLI and the app handle every modality through this interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    suffix: ClassVar[str]  # the primary output file's suffix, e.g. ".png"

    method: str
    encoder: str | None
    seed: int
    parameters: dict[str, Any] = Field(description="The fully resolved request, options included.")
    losses: dict[str, float] = Field(default_factory=dict, description="Final loss terms.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage, and total.")
    notes: list[str] = Field(default_factory=list, description="Choices made for the user (e.g. encoder fallback).")
    created: float = Field(default_factory=time.time)

    def metadata(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "encoder": self.encoder,
            "seed": self.seed,
            "parameters": self.parameters,
            "losses": self.losses,
            "timings": self.timings,
            "notes": self.notes,
        }

    def metadata_json(self) -> str:
        return json.dumps(self.metadata(), default=str, sort_keys=True)

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the output (atomically, with the metadata where the format allows) and return its path."""

    def preview(self) -> Image.Image | None:
        """A picture of the output for galleries (a spectrogram, a rendered view); None when it is an image."""
        return None

    def describe(self) -> str:
        """One line for the CLI: what was made and how."""
        return f"method {self.method}, encoder {self.encoder}, seed {self.seed}, {self.timings.get('total', 0):.1f} s"


class StyleResult(RunResult):
    suffix: ClassVar[str] = ".png"

    image: Image.Image

    def save(self, path: str | Path) -> Path:
        """Write a PNG, JPEG or WebP (by the suffix) carrying the resolved parameters as metadata (atomically: no
        half-written file)."""
        from nstdiff.imageio import save_image

        return save_image(self.image, path, {"nstdiff": self.metadata_json()})

    def describe(self) -> str:
        return f"{self.image.width}x{self.image.height}, {super().describe()}"
