"""Loaded diffusion pipelines: one base pipeline per model, shared by every variant and kept warm between requests.

Variants (txt2img, img2img, ControlNet) are made per run with `from_pipe`, which shares the base's weights, after the
base's add-ons (IP-Adapter, LoRAs) are set for that run. A lock serialises runs on one base, since add-ons change the
shared UNet. Memory switches (attention slicing, VAE slicing/tiling, CPU offload) are applied by `prepare` to each
run's final pipeline, after its add-ons: diffusers rebuilds attention processors when an IP-Adapter is loaded, and
offload hooks must cover the parts that pipeline uses (diffusers' IP-Adapter and loading guides). Loaded models are
kept within a memory budget, least recently used dropped first; under GPU memory pressure the cache is emptied and
the run retried once (`run_with_memory_retry`).
"""
from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from nstdiff.errors import InputError, ModelFileError
from nstdiff.memory import total_memory
from nstdiff.models.diffusion_catalogue import Family, load_catalogue
from nstdiff.models.diffusion_files import check_pipeline_folder, load_variant
from nstdiff.models.diffusion_hub import locally_available, resolve_repo
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
    image_encoder: Any = None  # the IP-Adapter's image encoder, kept while a text run unloads the adapter
    nbytes: int = 0  # parameters and buffers of the base pipeline


def module_bytes(*modules: Any) -> int:
    """Bytes held by the parameters and buffers of torch modules (anything else counts 0)."""
    total = 0
    for module in modules:
        if isinstance(module, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    return total


def cache_budget(settings: Settings, device: torch.device) -> int:
    """Bytes the loaded diffusion models may hold together (setting, else 80% of the device's memory)."""
    if settings.diffusion_memory_gb is not None:
        return int(settings.diffusion_memory_gb * 2**30)
    return int(0.8 * total_memory(device))


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[setting]


class PipelineCache:
    def __init__(self) -> None:
        self._models: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()  # (folder, device, dtype) →
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
                    self._models.move_to_end(key)  # most recently used last
                    return self._models[key]
            model = self._load_model(ref, folder, device, dtype, settings, message)
            with self._lock:
                self._models[key] = model
                self._evict(cache_budget(settings, device), message)
            return model

    def _evict(self, budget: int, message: Callable[[str], None]) -> None:
        """Drop least recently used models until the rest fit `budget`; the newest and any in use by a run stay
        (dropping one in use would free nothing and let the next request load it twice)."""
        for key, model in list(self._models.items())[:-1]:
            if sum(m.nbytes for m in self._models.values()) <= budget:
                break
            if model.lock.acquire(blocking=False):
                try:
                    del self._models[key]
                finally:
                    model.lock.release()
                message(f"unloaded {model.label} to stay within the diffusion memory budget")
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loaded(self) -> list[LoadedModel]:
        """The loaded models, least recently used first."""
        with self._lock:
            return list(self._models.values())

    def _load_model(self, ref: str, folder: Path, device: torch.device, dtype: torch.dtype, settings: Settings,
                    message: Callable[[str], None]) -> LoadedModel:
        catalogue = load_catalogue()
        pipeline_class = check_pipeline_folder(folder)
        architecture = "sdxl" if "XL" in pipeline_class else "sd"
        family = catalogue.families.get(ref) or next(
            f for f in catalogue.families.values() if f.architecture == architecture and not f.turbo)
        message(f"loading {ref} …")
        pipeline = _load(folder, family, dtype, device, settings, message)
        label = ref if ref in catalogue.families or "/" in ref else folder.name
        return LoadedModel(pipeline, folder, family, label, nbytes=module_bytes(*pipeline.components.values()))

    def release(self) -> None:
        """Drop every loaded pipeline and give the memory back."""
        with self._lock:
            self._models.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


PIPELINES = PipelineCache()


def offloads(settings: Settings, device: torch.device) -> bool:
    return settings.cpu_offload and device.type == "cuda"


def open_pipeline(folder: Path, dtype: torch.dtype, **components: Any) -> Any:
    """A diffusers pipeline from a complete folder, in the precision variant its weights are stored in (fp16 files
    preferred for fp16), without the NSFW classifier (nstdiff restyles the person's own photos)."""
    from diffusers import DiffusionPipeline

    variant = load_variant(folder, None, "fp16" if dtype == torch.float16 else "fp32")
    if '"safety_checker"' in (folder / "model_index.json").read_text():
        components.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipeline = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True, variant=variant,
                                                     **components)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelFileError(f"could not load the diffusion model in '{folder}': {exc}") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _load(folder: Path, family: Family, dtype: torch.dtype, device: torch.device, settings: Settings,
          message: Callable[[str], None]) -> Any:
    components = {}
    if family.vae_fp16 and dtype == torch.float16:  # SDXL's own VAE overflows to black in fp16
        name = f"{family.name}-vae-fp16"
        if locally_available(name, settings) or settings.downloads_allowed:
            from diffusers import AutoencoderKL

            components["vae"] = AutoencoderKL.from_pretrained(resolve_repo(name, settings, message), dtype=dtype,
                                                              use_safetensors=True)
        else:
            message(f"{name} is not on disk: the VAE decodes in fp32 (slower, more memory); "
                    f"`nstdiff models fetch {name}` fixes that")
    pipeline = open_pipeline(folder, dtype, **components)
    if not offloads(settings, device):  # offloaded models wait in CPU memory; `prepare` sets the hooks per run
        pipeline.to(device)
    return pipeline


def set_ip_adapter(model: LoadedModel, name: str | None, load: Callable[[Any], None] | None = None) -> None:
    """Load the IP-Adapter `name` into the model's UNet with `load(pipeline)`, or unload it (None).

    Attention goes back to the default processors first (diffusers rebuilds every processor with no arguments, which
    a sliced processor cannot take), and the image encoder is kept across an unload, so alternating text and reference
    runs do not read it from disk each time."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    if model.ip_adapter == name:
        return
    pipeline = model.pipeline
    pipeline.unet.set_attn_processor(AttnProcessor2_0())
    if model.ip_adapter is not None:
        model.image_encoder = pipeline.image_encoder
        pipeline.unload_ip_adapter()
        model.ip_adapter = None
    if name is not None and load is not None:
        if model.image_encoder is not None:
            pipeline.register_modules(image_encoder=model.image_encoder)
        load(pipeline)
        model.image_encoder, model.ip_adapter = pipeline.image_encoder, name


def prepare(pipe: Any, model: LoadedModel, settings: Settings, device: torch.device) -> list[str]:
    """Apply the memory settings to a run's final pipeline, after its add-ons are set; returns notes for the result.

    Attention slicing is skipped while an IP-Adapter is loaded (its processors cannot be sliced); VAE slicing saves
    the memory instead. CPU offload is set on this pipeline (a `from_pipe` variant does not inherit it), so a
    ControlNet and the IP-Adapter's image encoder move to the GPU only while they run."""
    notes = []
    if settings.attention_slicing and model.ip_adapter is None:
        pipe.enable_attention_slicing()
    elif settings.attention_slicing:
        pipe.vae.enable_slicing()
        notes.append("attention slicing is off while an IP-Adapter is loaded; VAE slicing saves memory instead")
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
    if offloads(settings, device):
        pipe.enable_model_cpu_offload(device=device)
    return notes


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
