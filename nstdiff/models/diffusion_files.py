"""What a diffusion repository or folder holds: the weight files a load opens, the small files beside them, and in
which precision variant (the plain "fp32" files or diffusers' `.fp16.` ones). Only safetensors weights count.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nstdiff.errors import ModelFileError
from nstdiff.models.diffusion_catalogue import Variant

CONFIG_FILES = ("*.json", "*.txt")  # model index, configs, scheduler, tokenizers: small, never weights
# the weight file of each pipeline component nstdiff loads, under its plain (fp32) name
PIPELINE_WEIGHTS = {"unet": "unet/diffusion_pytorch_model.safetensors",
                    "vae": "vae/diffusion_pytorch_model.safetensors",
                    "text_encoder": "text_encoder/model.safetensors",
                    "text_encoder_2": "text_encoder_2/model.safetensors"}
TRANSFORMERS_WEIGHTS = ("model.safetensors",)  # a transformers model repository (captioner, estimator)


def variant_file(file: str, variant: Variant) -> str:
    """`unet/diffusion_pytorch_model.safetensors` as stored in `variant` (`….fp16.safetensors`)."""
    return file if variant == "fp32" else file.replace(".safetensors", f".{variant}.safetensors")


def pipeline_weights(folder: Path) -> tuple[str, ...] | None:
    """The weight files (plain names) of the components a pipeline folder's `model_index.json` names."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return tuple(file for part, file in PIPELINE_WEIGHTS.items()
                 if isinstance(index.get(part), list) and None not in index[part])


@dataclass(frozen=True)
class Part:
    """What nstdiff needs of one repository: the weight files a load opens (None: a diffusers pipeline, whose
    components its model_index.json names), the small files beside them, and the variants the repository has."""

    repo: str
    weights: tuple[str, ...] | None
    configs: tuple[str, ...] = CONFIG_FILES
    variants: tuple[Variant, ...] = ("fp32",)

    def patterns(self, variant: Variant) -> list[str]:
        weights = self.weights if self.weights is not None else tuple(PIPELINE_WEIGHTS.values())
        return [*self.configs, *(variant_file(file, variant) for file in weights)]

    def missing(self, folder: Path, variant: Variant) -> list[str]:
        """The files of `variant` that `folder` lacks (a pipeline without a model index lacks that)."""
        weights = self.weights if self.weights is not None else pipeline_weights(folder)
        if weights is None:
            return ["model_index.json"]
        return [f for f in (variant_file(w, variant) for w in weights) if not (folder / f).is_file()]

    def variant_in(self, folder: Path, prefer: Variant = "fp32") -> Variant | None:
        """The variant whose files are all in `folder` (`prefer` first), or None."""
        order = sorted(("fp32", "fp16"), key=lambda v: v != prefer)
        return next((v for v in order if not self.missing(folder, v)), None)

    def complete(self, folder: Path) -> bool:
        return folder.is_dir() and self.variant_in(folder) is not None


def load_variant(folder: Path, weights: tuple[str, ...] | None, prefer: Variant) -> str | None:
    """The `variant=` argument that loads the weights in `folder` (None: the plain files), or a `ModelFileError`
    naming the files that are missing."""
    part = Part(str(folder), weights)
    variant = part.variant_in(folder, prefer)
    if variant is None:
        raise ModelFileError(f"'{folder.name}' lacks {', '.join(part.missing(folder, prefer))} (as safetensors); "
                             "fetch the model again")
    return None if variant == "fp32" else variant


def check_pipeline_folder(folder: Path) -> str:
    """Check a diffusers pipeline folder has every part its `model_index.json` names; return the pipeline class."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelFileError(f"'{folder}' is not a diffusers pipeline folder: it has no model_index.json")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"'{index_path}' is not valid JSON ({exc}); fetch the model again") from None
    optional = {"safety_checker", "feature_extractor", "image_encoder"}  # not used by nstdiff
    for part, spec in index.items():
        if part.startswith("_") or part in optional or not isinstance(spec, list) or None in spec:
            continue
        if not (folder / part).is_dir():
            raise ModelFileError(f"'{folder}' is missing its '{part}' folder ({spec[1]}); fetch the model again or "
                                 "point --model at a complete folder")
    return str(index.get("_class_name", ""))
