"""The diffusion methods' options, and what a run resolves from them (the prompt, the schedule)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from nstdiff.diffusion.presets import Preset
from nstdiff.schema import MAX_PROMPT_CHARS, Frozen

MIN_STRENGTH = 0.05  # below this img2img keeps the photo as it is (not one denoising step's worth of change)


class LoraWeight(Frozen):
    name: str = Field(max_length=64)
    weight: float = Field(1.0, ge=-2, le=2)


class DiffusionOptions(Frozen):
    model: str | None = Field(None, max_length=500, description="Family (sd15, sdxl, sd-turbo, sdxl-turbo), a Hugging "
                              "Face repo id or a local folder; None = the diffusion_family setting.")
    preset: str | None = Field(None, max_length=64, description="A style preset by name (see `nstdiff presets`).")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="What the image should not "
                                        "look like; None = the preset's.")
    guidance: float | None = Field(None, ge=0, le=30, description="Classifier-free guidance; None = the model's.")
    structure: Literal["none", "canny", "depth"] = Field("none", description="Keep the photo's structure with a "
                                                         "ControlNet on its edges (canny) or depth.")
    structure_scale: float = Field(0.8, ge=0, le=2, description="How strongly the structure is held.")
    fast: bool = Field(False, description="1–4 steps: Turbo models' own schedule, or LCM-LoRA for the others.")
    loras: list[LoraWeight] = Field(default_factory=list, max_length=8, description="Your LoRAs from the library "
                                    "with blend weights, e.g. my-ink:0.8 (weight 0 = off).")

    @field_validator("loras", mode="before")
    @classmethod
    def _lora_shorthand(cls, value: Any) -> Any:
        # "name:0.8" / ("name", 0.8) / {"name": …, "weight": …}; a bare name means weight 1
        def one(item: Any) -> Any:
            if isinstance(item, str):
                name, _, weight = item.partition(":")
                return {"name": name.strip(), "weight": weight.strip() or 1.0}
            if isinstance(item, (list, tuple)) and len(item) == 2:
                return {"name": item[0], "weight": item[1]}
            return item

        return [one(item) for item in value] if isinstance(value, (list, tuple)) else value


@dataclass
class Prompting:
    prompt: str
    negative: str | None
    strength: float
    preset: Preset | None


@dataclass
class Schedule:
    steps: int
    guidance: float
