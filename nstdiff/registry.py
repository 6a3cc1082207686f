"""The method registry: one class per file, registered by name with its request type and capabilities.

Built-in methods live in `nstdiff.methods`; extensions (audio, mesh, third-party packages) register the same way
through the `nstdiff.methods` entry-point group, and may add a CLI command and an app tab through two more groups,
e.g. in their pyproject:

    [project.entry-points."nstdiff.methods"]
    audio = "extensions.audio.method"            # a module whose import registers the method
    [project.entry-points."nstdiff.commands"]
    audio = "extensions.audio.cli:add_command"   # add_command(subparsers): a subparser with set_defaults(handler=…)
    [project.entry-points."nstdiff.tabs"]
    audio = "extensions.audio.tab:build_tab"     # build_tab(app) inside the app's Blocks; torch-free
"""
from __future__ import annotations

import importlib
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from nstdiff.errors import InputError, format_validation_error

if TYPE_CHECKING:
    from nstdiff.context import RunContext
    from nstdiff.schema import MethodInfo

log = logging.getLogger(__name__)

BUILTIN_MODULES = ("nstdiff.methods.gram", "nstdiff.methods.adain", "nstdiff.methods.feedforward",
                   "nstdiff.methods.fast_style", "nstdiff.methods.diffusion_text",
                   "nstdiff.methods.diffusion_reference", "nstdiff.methods.diffusion_styleid",
                   "nstdiff.methods.diffusion_stylealigned", "nstdiff.methods.chain")
ENTRY_POINT_GROUP = "nstdiff.methods"
COMMANDS_GROUP = "nstdiff.commands"
TABS_GROUP = "nstdiff.tabs"


@dataclass(frozen=True)
class Capabilities:
    modality: str = "image"  # image, audio, mesh: which app tab and request type
    needs_content: bool = False  # False: also runs without content (texture synthesis)
    masks: bool = False  # honours Controls.mask
    color_controls: bool = False  # honours Controls.preserve_color
    needs_gpu: bool = False  # usable on CPU only for tests/previews
    uses_encoder: bool = False  # honours `encoder`
    style_images: str = "required"  # required, optional or unused: the request's style images
    prompt: str = "unused"  # required, optional or unused: the request's text prompt (or a preset)


class Method(ABC):
    """A style-transfer method. Subclasses set the class attributes and implement `execute`."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    request_model: ClassVar[type[BaseModel]]
    options_model: ClassVar[type[BaseModel]]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def info(self) -> "MethodInfo":
        from dataclasses import asdict

        from nstdiff.schema import MethodInfo

        return MethodInfo(name=self.name, title=self.title, description=self.description,
                          options_schema=self.options_model.model_json_schema(), **asdict(self.capabilities))

    def parse_options(self, options: dict[str, Any] | BaseModel) -> BaseModel:
        if isinstance(options, self.options_model):
            return options
        try:
            return self.options_model.model_validate(dict(options))
        except ValidationError as exc:
            raise InputError(f"invalid options for method '{self.name}': {format_validation_error(exc)}") from None

    @abstractmethod
    def execute(self, request: Any, context: "RunContext") -> Any:
        """Run the request; report progress and honour cancellation through `context`."""


M = TypeVar("M", bound=type[Method])
_METHODS: dict[str, Method] = {}
_loaded = False
_LOADING = threading.RLock()  # an import in progress may look a method up


def register_method(cls: M) -> M:
    """Class decorator: make a method available by its `name`."""
    if cls.name in _METHODS and type(_METHODS[cls.name]) is not cls:
        raise RuntimeError(f"method name '{cls.name}' is registered twice ({cls.__module__})")
    _METHODS[cls.name] = cls()
    return cls


def _load_all() -> None:
    """Import every method once; the first jobs of a server may ask at the same moment, and none may see the
    registry half-filled (an "unknown method" for a method that is loading)."""
    global _loaded
    with _LOADING:
        if _loaded:
            return
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()
            except Exception as exc:  # a broken extension must not take the core down
                log.warning("extension '%s' failed to load: %s", entry.name, exc)
        _loaded = True


def plugins(group: str) -> list[Any]:
    """The objects the installed extensions offer in an entry-point group (COMMANDS_GROUP, TABS_GROUP), by name."""
    loaded = []
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            loaded.append(entry.load())
        except Exception as exc:
            log.warning("extension '%s' (%s) failed to load: %s", entry.name, group, exc)
    return loaded


def get_method(name: str) -> Method:
    _load_all()
    if name not in _METHODS:
        raise InputError(f"unknown method '{name}'; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def list_methods() -> list[Method]:
    _load_all()
    return [_METHODS[name] for name in sorted(_METHODS)]
