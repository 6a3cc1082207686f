"""The diffusion model catalogue (`configs/diffusion.toml`): per family, the base repository and its add-ons."""
from __future__ import annotations

import functools
import tomllib
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nstdiff.errors import InputError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IPAdapterSpec(Strict):
    repo: str
    subfolder: str
    weight_name: str
    image_encoder: str  # folder inside the repo


class LoraSpec(Strict):
    repo: str
    weight_name: str


class Family(Strict):
    name: str
    title: str
    base: str
    architecture: Literal["sd", "sdxl"]
    cross_attention_dim: int = Field(ge=1)
    steps: int = Field(ge=1, le=200)
    guidance: float = Field(ge=0, le=30)
    turbo: bool = False
    ip_adapter: IPAdapterSpec | None = None
    controlnet: dict[str, str] = Field(default_factory=dict)
    lcm_lora: LoraSpec | None = None
    vae_fp16: str | None = None  # a VAE that decodes this family in fp16 (SDXL's own overflows)
    instantstyle: dict[str, dict] = Field(default_factory=dict)


Variant = Literal["fp32", "fp16"]  # fp32: a repository's plain weight files; fp16: its `.fp16.` files


class Catalogue(Strict):
    families: dict[str, Family]
    estimators: dict[str, str]
    segmenters: dict[str, str]  # part name → repo of a text-prompted segmentation model (CLIPSeg)
    repos: dict[str, dict[Variant, float]]  # repo id → MB to download per variant it has

    def variants(self, repo: str) -> tuple[Variant, ...]:
        """The precision variants `repo` has (a repo the catalogue does not know: plain files)."""
        return tuple(self.repos.get(repo, {"fp32": 0.0}))

    def family(self, name: str) -> Family:
        if name not in self.families:
            raise InputError(f"unknown model family '{name}'; choose one of {', '.join(self.families)}, a Hugging "
                             "Face repo id or a local folder")
        return self.families[name]


@functools.lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    data = tomllib.loads((resources.files("nstdiff.configs") / "diffusion.toml").read_text())
    families = {name: Family(name=name, **spec) for name, spec in data["family"].items()}
    return Catalogue(families=families, estimators=data.get("estimators", {}),
                     segmenters=data.get("segmenters", {}), repos=data.get("repos", {}))
