"""Style presets: named prompt templates with a negative prompt and a suggested strength, as data.

The built-in ones are in `configs/style_presets.toml`; a person adds or overrides presets with their own TOML file
(`presets_file` setting) in the same format:

    [[preset]]
    name = "my-ink"                    # what --preset and the app's gallery use
    title = "My ink style"
    prompt = "{subject}, loose ink drawing, sepia wash"   # {subject} = the person's own prompt
    negative = "photo, blurry"
    strength = 0.6                     # suggested img2img strength
    tags = ["ink"]
"""
from __future__ import annotations

import difflib
import tomllib
from importlib import resources
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from nstdiff.errors import InputError, format_validation_error
from nstdiff.models.diffusion_catalogue import Strict
from nstdiff.settings import Settings, get_settings

DEFAULT_SUBJECT = "a picture"


class Preset(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    title: str = Field(max_length=100)
    prompt: str = Field(max_length=1000)
    negative: str = Field("", max_length=1000)
    strength: float = Field(0.6, ge=0, le=1)
    tags: list[str] = Field(default_factory=list)

    @field_validator("prompt")
    @classmethod
    def _one_subject(cls, prompt: str) -> str:
        if prompt.count("{subject}") != 1:
            raise ValueError("the prompt template needs exactly one {subject}")
        return prompt

    def render(self, subject: str | None) -> str:
        return self.prompt.replace("{subject}", subject or DEFAULT_SUBJECT)


def _read(text: str, where: str) -> list[Preset]:
    try:
        entries = tomllib.loads(text).get("preset", [])
        return [Preset(**entry) for entry in entries]
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"presets file {where} is not valid TOML: {exc}") from None
    except (ValidationError, TypeError) as exc:
        detail = format_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InputError(f"presets file {where}: {detail}") from None


def load_presets(settings: Settings | None = None) -> dict[str, Preset]:
    """Built-in presets, then the person's own file (theirs win on equal names)."""
    settings = settings or get_settings()
    presets = {p.name: p for p in _read((resources.files("nstdiff.configs") / "style_presets.toml").read_text(),
                                        "style_presets.toml")}
    if settings.presets_file is not None:
        path = Path(settings.presets_file)
        if not path.is_file():
            raise InputError(f"presets_file '{path}' does not exist; fix NSTDIFF_PRESETS_FILE or remove it")
        presets.update({p.name: p for p in _read(path.read_text(), str(path))})
    return presets


def get_preset(name: str, settings: Settings | None = None) -> Preset:
    presets = load_presets(settings)
    if name not in presets:
        close = difflib.get_close_matches(name, presets, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see `nstdiff presets` ({len(presets)} presets)"
        raise InputError(f"unknown preset '{name}'{hint}")
    return presets[name]
