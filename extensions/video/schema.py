"""The video request: typed and bounded, shared by the CLI, the app tab and the Python API. Torch-free."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from nstdiff.schema import MAX_PROMPT_CHARS, Frozen

METHOD_NAME = "video"
INPUT_SUFFIXES = (".mp4", ".m4v", ".webm", ".mov", ".mkv", ".gif")
OUTPUT_SUFFIXES = (".mp4", ".webm")


class VideoStyleRequest(Frozen):
    """Stylize every frame of a clip with an image method, kept steady from frame to frame by optical flow."""

    method: str = Field(METHOD_NAME, description="The registered method name.")
    content: Path = Field(..., description="The clip to stylize (MP4, WebM, MOV, MKV or GIF).")
    image_method: str = Field("feedforward", description="The image method run on each frame: feedforward, adain, "
                              "fast-style (blended along the flow), gram (warped start and temporal loss), "
                              "diffusion-text or diffusion-reference (warped img2img start, keyframes).")
    style: Path | None = Field(None, description="The style image.")
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="A text style (diffusion methods).")
    size: int = Field(256, ge=16, le=4096, description="Longest side of the output frames, in pixels.")
    fps: float | None = Field(None, gt=0, le=120, description="Output frame rate; None keeps the clip's.")
    max_seconds: float | None = Field(None, gt=0, description="Stylize only the first N seconds.")
    frames: int | None = Field(None, ge=1, description="Stylize only the first N frames (1: a preview).")
    consistency: float = Field(0.7, ge=0, le=1, description="0 stylizes each frame on its own (flickers); 1 holds "
                               "every pixel the flow can follow to the frame before.")
    keyframe_every: int = Field(0, ge=0, le=10_000, description="Diffusion: restart from the frame itself every N "
                                "frames (0: only at scene cuts), so drift cannot build up.")
    strength: float | None = Field(None, ge=0, le=1, description="0 keeps the content, 1 is all style; None: the "
                                   "image method's default.")
    steps: int | None = Field(None, ge=1, le=10_000, description="Optimisation / denoising steps per frame.")
    encoder: str = Field("auto", description="Feature encoder of the optimising methods: auto, vgg19, vgg16, random.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="One seed for every frame; None draws one.")
    options: dict[str, Any] = Field(default_factory=dict, description="The image method's own options.")

    @field_validator("prompt")
    @classmethod
    def _blank_prompt_is_none(cls, prompt: str | None) -> str | None:
        return prompt.strip() or None if prompt is not None else None

    @model_validator(mode="after")
    def _needs_a_style(self) -> "VideoStyleRequest":
        if self.style is None and self.prompt is None and not self.options.get("network"):
            raise ValueError("give a style: a style image (--style) or a text prompt (--prompt) for a diffusion method")
        return self
