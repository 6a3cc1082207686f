"""Running a request: progress callbacks, cancellation and the device, behind one small interface.

`InProcessExecutor` (the default, and what tests use) runs in the calling thread. A distributed executor can
replace it without touching the front ends or the methods: they only see `Executor.run` and `RunContext`.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pydantic import BaseModel, ValidationError

from nstdiff.errors import Cancelled, InputError, ResourceError
from nstdiff.memory import check_memory, is_out_of_memory, out_of_memory_message, release_memory
from nstdiff.registry import format_validation_error, get_method, list_methods
from nstdiff.routing import ROUTED, route
from nstdiff.schema import ImageStyleRequest, MethodInfo, ProgressEvent
from nstdiff.settings import Settings, get_settings

if TYPE_CHECKING:  # torch is imported only when a job runs, so front ends can import this module cheaply
    import torch

ProgressCallback = Callable[[ProgressEvent], None]
PREVIEW_EVERY = 0.5  # seconds between live previews: cheap (a ≤ 256 px PNG), yet a picture that moves


class CancelToken:
    """Set from any thread (a signal handler, a UI button); the run stops at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def pick_device(setting: str) -> "torch.device":
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise InputError(f"unknown device '{setting}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"device '{setting}' was asked for but no such CUDA GPU is visible; use NSTDIFF_DEVICE=cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device '{setting}' was asked for but MPS is not available; use NSTDIFF_DEVICE=cpu")
    return device


@dataclass
class RunContext:
    """What a method gets besides its request: where to run, how to report, when to stop."""

    settings: Settings
    device: "torch.device"
    seed: int
    progress: ProgressCallback | None = None
    cancel: CancelToken | None = None
    started: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)
    level: int = 0  # the pass a step belongs to: `optimise_image` counts one per call (a pyramid level)
    preview_every: float | None = None  # seconds between live previews (the first comes after as long); None:
    # PREVIEW_EVERY
    _last_preview: float = field(default=0.0, init=False, repr=False)

    def message(self, text: str) -> None:
        """A status line for the user (e.g. 'fetching vgg16…'), sent as a progress event without a step."""
        if self.progress:
            self.progress(ProgressEvent(step=0, total=0, stage="message", message=text, elapsed=self.elapsed))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def wants_preview(self) -> bool:
        """Whether a live preview is due: someone listens and `preview_every` seconds passed since the last one (or
        since the start). Ask before making the picture, so a step pays for one only when it is sent."""
        every = PREVIEW_EVERY if self.preview_every is None else self.preview_every
        return self.progress is not None and self.elapsed - self._last_preview >= every

    def step(self, step: int, total: int, losses: dict[str, float] | None = None, stage: str = "optimise",
             preview: Any = None) -> None:
        """Report a finished step, with `preview` (the image now: a tensor in [0, 1] or a PIL image) as a small PNG
        when given; raises `Cancelled` if cancellation was asked for (also from the callback)."""
        if self.progress:
            picture = None
            if preview is not None:
                from nstdiff.preview import preview_png

                picture, self._last_preview = preview_png(preview), self.elapsed
            self.progress(ProgressEvent(step=step, total=total, stage=stage, losses=losses or {}, elapsed=self.elapsed,
                                        level=self.level, preview=picture))
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(step, total)


class Executor(Protocol):
    """All a front end may ask of the core."""

    def run(self, request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
        """Run a request to its result; raises `NstdiffError` subclasses with readable messages."""

    def methods(self) -> list[MethodInfo]:
        """The registered methods, for menus."""

    def models(self) -> list[Any]:
        """Each model with where it is and whether it is ready."""

    def fetch_model(self, name: str, message: Callable[[str], None] | None = None, source: Path | None = None) -> Any:
        """Fetch a missing model (or import it from the local file `source`), reporting status lines."""

    def loaded_models(self) -> dict[str, str]:
        """The diffusion models held in memory now: name → bytes of weights and device, e.g. "6.9 GB on cuda"."""

    def presets(self) -> list[Any]:
        """The style presets (built in and the person's own)."""

    def families(self) -> dict[str, str]:
        """Diffusion model families: name → title."""

    def loras(self, include_damaged: bool = False) -> list[Any]:
        """The person's LoRA library (with the entries that cannot be used, each with its reason, if asked)."""

    def lora(self, action: str, **arguments: Any) -> Any:
        """A library or training action: rename, delete, export, import, train (in the background), jobs, files."""

    def networks(self) -> list[Any]:
        """The person's fast style networks."""

    def network(self, action: str, **arguments: Any) -> Any:
        """A fast style network library or training action: delete, train (in the background), jobs, files."""

    def train(self, config: BaseModel, progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None) -> Any:
        """Train in this process, by the type of `config`: a LoRA, a fast style network or an AdaIN decoder; a
        cancelled run stops after its current step with its checkpoints kept."""


class InProcessExecutor:
    """Runs each request in the calling thread on the configured device."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings

    def methods(self) -> list[MethodInfo]:
        return [method.info() for method in list_methods()]

    def models(self) -> list[Any]:
        from nstdiff.models import list_models

        return list_models(self.settings)

    def loaded_models(self) -> dict[str, str]:
        from nstdiff.diffusion.pipelines import PIPELINES

        return {m.label: f"{m.nbytes / 1e9:.2f} GB on {m.pipeline.device.type}" for m in PIPELINES.loaded()}

    def fetch_model(self, name: str, message: Callable[[str], None] | None = None, source: Path | None = None) -> Any:
        from nstdiff.models import fetch_model

        return fetch_model(name, source=source, settings=self.settings, message=message)

    def presets(self) -> list[Any]:
        from nstdiff.diffusion.presets import load_presets

        return list(load_presets(self.settings).values())

    def families(self) -> dict[str, str]:
        from nstdiff.diffusion.catalogue import load_catalogue

        return {name: family.title for name, family in load_catalogue().families.items()}

    def loras(self, include_damaged: bool = False) -> list[Any]:
        from nstdiff.loras import list_loras

        return list_loras(self.settings, include_damaged=include_damaged)

    def lora(self, action: str, **arguments: Any) -> Any:
        from nstdiff import kohya, loras
        from nstdiff.training import background
        from nstdiff.training.lora_data import LoraTraining

        settings = self.settings or get_settings()
        if action == "train":
            try:
                config = LoraTraining(**arguments)
            except ValidationError as exc:
                raise InputError(f"invalid training settings: {format_validation_error(exc)}") from None
            return background.start_training(config, settings)
        actions = {"rename": loras.rename_lora, "delete": loras.delete_lora, "export": kohya.export_kohya,
                   "import": loras.import_lora, "jobs": background.training_states,
                   "files": background.training_files}
        if action not in actions:
            raise InputError(f"unknown LoRA action '{action}'; one of train, {', '.join(actions)}")
        return actions[action](**arguments, settings=settings)

    def networks(self) -> list[Any]:
        from nstdiff.training.fast_style_data import list_networks

        return list_networks(self.settings)

    def network(self, action: str, **arguments: Any) -> Any:
        from nstdiff.training import fast_style_data as networks

        actions = {"delete": networks.delete_network, "train": networks.start_training,
                   "jobs": networks.training_states, "files": networks.training_files}
        if action not in actions:
            raise InputError(f"unknown fast style network action '{action}'; one of {', '.join(actions)}")
        return actions[action](**arguments, settings=self.settings or get_settings())

    def train(self, config: BaseModel, progress: ProgressCallback | None = None,
              cancel: CancelToken | None = None) -> Any:
        from nstdiff.training.fast_style_data import FastStyleTraining
        from nstdiff.training.lora_data import LoraTraining

        if isinstance(config, LoraTraining):
            from nstdiff.training.lora import train_lora as train
        elif isinstance(config, FastStyleTraining):
            from nstdiff.training.fast_style import train_fast_style as train
        else:  # a DecoderTraining; each trainer is imported only when it runs (the LoRA's brings in diffusers)
            from nstdiff.training.adain_decoder import train_decoder as train
        return train(config, progress=progress, cancel=cancel, settings=self.settings)

    def run(self, request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
        settings = self.settings or get_settings()
        name = request.get("method", "auto") if isinstance(request, dict) else request.method
        routed, library = None, None
        if name in ROUTED:
            try:
                # exclude_unset: what the person left unset stays unset (a preset's or a method's own default applies)
                image_request = request if isinstance(request, ImageStyleRequest) else ImageStyleRequest.model_validate(
                    request.model_dump(exclude_unset=True) if isinstance(request, BaseModel) else request)
            except ValidationError as exc:
                raise InputError(f"invalid request: {format_validation_error(exc)}") from None
            name, routed, fields = route(image_request, settings)
            library = fields.pop("library", None)  # words matched to the style library: recorded, not a field
            request = image_request.model_copy(update={**fields, "method": name})
        method = get_method(name)
        if not isinstance(request, method.request_model):
            try:
                request = method.request_model.model_validate(
                    request.model_dump(exclude_unset=True) if isinstance(request, BaseModel) else request
                )
            except ValidationError as exc:
                raise InputError(f"invalid request: {format_validation_error(exc)}") from None
        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        context = RunContext(settings, pick_device(settings.device), seed, progress, cancel)
        if routed:
            context.notes.append(routed)
        if library:
            context.notes.append(library.pop("note"))
        check_memory(method, request, settings, context.device)
        try:
            result = method.execute(request, context)
            if library:
                result.parameters["library"] = library
            return result
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
        # out of memory: here, past the except block, the traceback and the run's tensors it held are gone
        release_memory(context.device)
        raise ResourceError(out_of_memory_message(request))


def stylize(request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
    """Run `request` with the method it names and return its result (`StyleResult` for images)."""
    return InProcessExecutor().run(request, progress, cancel)
