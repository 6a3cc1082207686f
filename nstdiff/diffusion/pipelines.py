"""Loaded diffusion pipelines: one base pipeline per model, shared by every variant and kept warm between requests.

Variants (txt2img, img2img, ControlNet) are made per run with `from_pipe`, which shares the base's weights, after the
base's add-ons (IP-Adapter, LoRAs) are set for that run. A lock serialises runs on one base, since add-ons change the
shared UNet. Under GPU memory pressure the cache is emptied and the run retried once (`run_with_memory_retry`).
"""
from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from nstdiff.diffusion.catalogue import Family, load_catalogue
from nstdiff.diffusion.hub import check_pipeline_folder, resolve_repo
from nstdiff.errors import InputError, ModelFileError
from nstdiff.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A base pipeline and what was resolved to load it."""

    pipeline: Any
    folder: Path
    family: Family
    label: str  # what the result reports: the family name, repo id or folder
    lock: threading.RLock = field(default_factory=threading.RLock)
    ip_adapter: str | None = None  # which IP-Adapter is loaded into the UNet now
    loras: set[str] = field(default_factory=set)  # adapter names loaded into the UNet
    controlnets: dict[str, Any] = field(default_factory=dict)  # structure kind → ControlNetModel
    library_adapters: dict[str, str] = field(default_factory=dict)  # library LoRA name → its adapter in the UNet
    depth_estimator: Any = None  # transformers depth-estimation pipeline, made on first use


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[setting]


class PipelineCache:
    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str], LoadedModel] = {}  # (folder, device, dtype) →
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    def get(self, ref: str | None, device: torch.device, settings: Settings, message: Callable[[str], None]
            ) -> LoadedModel:
        """The base pipeline for `ref` (a family name, repo id or folder; None = the settings' family)."""
        ref = ref or settings.diffusion_family
        dtype = pick_dtype(settings.diffusion_dtype, device)
        folder = resolve_repo(ref, settings, message)  # cheap once on disk; keys the cache by what is loaded
        key = (str(folder.resolve()), str(device), str(dtype))
        with self._loading:  # two jobs asking for a cold model load it once
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = self._load_model(ref, folder, device, dtype, settings, message)
            with self._lock:
                self._models[key] = model
            return model

    def _load_model(self, ref: str, folder: Path, device: torch.device, dtype: torch.dtype, settings: Settings,
                    message: Callable[[str], None]) -> LoadedModel:
        catalogue = load_catalogue()
        pipeline_class = check_pipeline_folder(folder)
        architecture = "sdxl" if "XL" in pipeline_class else "sd"
        family = catalogue.families.get(ref) or next(
            f for f in catalogue.families.values() if f.architecture == architecture and not f.turbo)
        message(f"loading {ref} …")
        pipeline = _load(folder, dtype, device, settings)
        return LoadedModel(pipeline, folder, family, ref if ref in catalogue.families or "/" in ref else folder.name)

    def release(self) -> None:
        """Drop every loaded pipeline and give the memory back."""
        with self._lock:
            self._models.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


PIPELINES = PipelineCache()


def _load(folder: Path, dtype: torch.dtype, device: torch.device, settings: Settings) -> Any:
    from diffusers import DiffusionPipeline

    extra = {}
    index = (folder / "model_index.json").read_text()
    if '"safety_checker"' in index:  # nstdiff restyles the person's own photos; no NSFW classifier download
        extra.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipeline = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True, **extra)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelFileError(f"could not load the diffusion model in '{folder}': {exc}") from None
    pipeline.set_progress_bar_config(disable=True)
    if settings.attention_slicing:
        pipeline.enable_attention_slicing()
    if settings.vae_tiling:
        pipeline.vae.enable_tiling()
    if settings.cpu_offload and device.type == "cuda":
        pipeline.enable_model_cpu_offload(device=device)
    else:
        pipeline.to(device)
    return pipeline


def run_with_memory_retry(run: Callable[[], Any], what: str) -> Any:
    """Run; on GPU out-of-memory, empty the pipeline cache and try once more, then explain what to change.

    The release happens after the `except` block: while an exception is being handled its traceback keeps the
    failed attempt's frames, and so its tensors, alive."""
    for attempt in (1, 2):
        try:
            return run()
        except torch.cuda.OutOfMemoryError:
            pass
        PIPELINES.release()  # the failed attempt's frames are gone now
        if attempt == 1:
            log.warning("out of GPU memory during %s; released the cached pipelines, retrying once", what)
    raise InputError(f"out of GPU memory during {what}; use a smaller size, or set NSTDIFF_CPU_OFFLOAD=1, "
                     "NSTDIFF_ATTENTION_SLICING=1 and NSTDIFF_VAE_TILING=1")
