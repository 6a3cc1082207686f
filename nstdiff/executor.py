"""Running a request: progress callbacks, cancellation and the device, behind one small interface.

`InProcessExecutor` (the default, and what tests use) runs in the calling thread. `nstdiff.distributed.RayExecutor`
replaces it (setting `backend = "ray"`) without touching the front ends or the methods: they only see
`Executor.run` and `RunContext`.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ValidationError

from nstdiff.context import CancelToken, ProgressCallback, RunContext, pick_device
from nstdiff.errors import InputError, ResourceError, format_validation_error
from nstdiff.memory import check_memory, is_out_of_memory, out_of_memory_message, release_memory
from nstdiff.registry import get_method, list_methods
from nstdiff.routing import ROUTED, route
from nstdiff.schema import ImageStyleRequest, MethodInfo
from nstdiff.settings import Settings, get_settings

__all__ = ["CancelToken", "Executor", "InProcessExecutor", "ProgressCallback", "RunContext", "pick_device", "stylize"]


class Executor(Protocol):
    """All a front end may ask of the core."""

    def run(self, request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
        """Run a request to its result; raises `NstdiffError` subclasses with readable messages."""

    def methods(self) -> list[MethodInfo]:
        """The registered methods, for menus."""

    def health(self) -> dict[str, Any]:
        """Where jobs run, for `/healthz`: the backend, and for a cluster its address and each deployment's replicas."""

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

    def preview_mask(self, content: Path, styles: int, controls: Any, box: tuple[int, int, int, int] | None = None,
                     foreground: list[tuple[int, int]] | None = None,
                     background: list[tuple[int, int]] | None = None) -> Any:
        """The region mask a run would use, before it runs (`controls.mask_preview.MaskPreview`: the mask in the
        painter's colours, an overlay on the photo, each region's area): from the words in `controls`, or from
        GrabCut when a box or clicks are given."""

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

    def health(self) -> dict[str, Any]:
        return {"backend": "local"}

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
        from nstdiff.models.diffusion_catalogue import load_catalogue

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

    def preview_mask(self, content: Path, styles: int, controls: Any, box: tuple[int, int, int, int] | None = None,
                     foreground: list[tuple[int, int]] | None = None,
                     background: list[tuple[int, int]] | None = None) -> Any:
        from nstdiff.controls.mask_preview import mask_preview

        settings = self.settings or get_settings()
        return mask_preview(content, styles, controls, settings, pick_device(settings.device), box, foreground,
                            background)

    def run(self, request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
        settings = self.settings or get_settings()
        name = method_name(request)
        routed, library = None, None
        if name in ROUTED:
            image_request = as_image_request(request)
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


def method_name(request: Any) -> str:
    """The method a request names (`auto` and `diffusion` are routed when it runs)."""
    return request.get("method", "auto") if isinstance(request, dict) else request.method


def as_image_request(request: Any) -> ImageStyleRequest:
    """A routed request as an `ImageStyleRequest`, validated; an `InputError` that says what is wrong otherwise."""
    try:
        # exclude_unset: what the person left unset stays unset (a preset's or a method's own default applies)
        return request if isinstance(request, ImageStyleRequest) else ImageStyleRequest.model_validate(
            request.model_dump(exclude_unset=True) if isinstance(request, BaseModel) else request)
    except ValidationError as exc:
        raise InputError(f"invalid request: {format_validation_error(exc)}") from None


def stylize(request: Any, progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> Any:
    """Run `request` with the method it names and return its result (`StyleResult` for images)."""
    return InProcessExecutor().run(request, progress, cancel)
