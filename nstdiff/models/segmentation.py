"""The text-prompted segmentation model (CLIPSeg: Lüddecke & Ecker 2022, "Image Segmentation Using Text and Image
Prompts"), loaded once per folder and device. Which model: `settings.segmentation_model`, a catalogue part name
(`clipseg` = CIDAS/clipseg-rd64-refined), a Hugging Face repo id or a local folder, resolved like every diffusion
part (folder → models folder → HF cache → download when allowed). Only `model.safetensors` is ever loaded.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nstdiff.errors import ModelFileError
from nstdiff.models.diffusion_files import TRANSFORMERS_WEIGHTS
from nstdiff.models.diffusion_hub import resolve_repo
from nstdiff.models.resolver import Message
from nstdiff.settings import Settings


@dataclass(frozen=True)
class Segmenter:
    processor: Any  # transformers.CLIPSegProcessor: the CLIP tokenizer + the 352² image processor
    model: Any  # transformers.CLIPSegForImageSegmentation, in eval mode on `device`
    device: torch.device
    name: str  # what was asked for (part name, repo id or folder name), for messages


_LOADED: dict[tuple[str, str], Segmenter] = {}
_LOCK = threading.Lock()  # two requests arriving together load the model once


def check_segmenter_folder(folder: Path) -> None:
    """A CLIPSeg folder must hold its weights as safetensors; a pickled `pytorch_model.bin` is refused, never read."""
    if all((folder / weights).is_file() for weights in TRANSFORMERS_WEIGHTS):
        return
    if (folder / "pytorch_model.bin").is_file():
        raise ModelFileError(f"the segmentation model '{folder.name}' has only pytorch_model.bin, a pickle that "
                             "nstdiff never loads; use a copy with model.safetensors (e.g. convert it once with "
                             "transformers' save_pretrained(safe_serialization=True)) or fetch `clipseg` again")
    raise ModelFileError(f"the segmentation model '{folder.name}' has no model.safetensors; fetch it again "
                         "(`nstdiff models fetch clipseg`)")


def load_segmenter(settings: Settings, device: torch.device, message: Message | None = None) -> Segmenter:
    """The CLIPSeg model and processor of `settings.segmentation_model`, loaded on first use and kept."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    ref = settings.segmentation_model
    folder = resolve_repo(ref, settings, message, weights=TRANSFORMERS_WEIGHTS)
    key = (str(folder.resolve()), str(device))
    with _LOCK:
        if key not in _LOADED:
            check_segmenter_folder(folder)
            processor = CLIPSegProcessor.from_pretrained(folder)
            model = CLIPSegForImageSegmentation.from_pretrained(folder, use_safetensors=True).to(device).eval()
            _LOADED[key] = Segmenter(processor, model, device, Path(ref).name)
        return _LOADED[key]
