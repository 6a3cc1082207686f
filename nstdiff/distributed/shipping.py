"""Input files travel to replicas through Ray's object store, not shared paths.

The app's process replaces every input file path in a request (at any depth: styles, masks, a mesh's textures) with
a `Parcel` holding an object reference to the file's bytes; the replica writes the bytes to a folder of its own under
the original file name and runs the request on those paths, then names the original paths again in the result (its
parameters, a video's source clip), so the app's history keeps the inputs as it does for the local backend.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel

from nstdiff.settings import Settings
from nstdiff.store import INPUT_FIELDS

# the files an OBJ or glTF names beside itself (materials, textures, buffers) travel with it
COMPANION_SUFFIXES = {".mtl", ".bin", ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tga", ".tif", ".tiff"}
WITH_COMPANIONS = {".obj", ".gltf"}


@dataclass
class Parcel:
    """An input file in the object store: its bytes (None when it is over the size limit: the replica then sees a
    file as large, which fails the same check with the same message), and the files that travel with it."""

    original: str
    data: Any = None  # an ObjectRef to the file's bytes
    size: int = 0
    companions: dict[str, Any] = field(default_factory=dict)  # file name -> ObjectRef


def map_paths(value: Any, fn: Callable[[Any], Any], key: str | None = None) -> Any:
    """`value` with `fn` applied to every input file path in it: `Path` values (and `Parcel`s) anywhere in a request
    model, strings under the input fields of a request given as a dict. Models are copied only where they change,
    so what the person left unset stays unset."""
    if isinstance(value, BaseModel):
        changed = {}
        for name in type(value).model_fields:
            old = getattr(value, name)
            new = map_paths(old, fn, name)
            if new is not old:
                changed[name] = new
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, dict):
        items = {k: map_paths(v, fn, k) for k, v in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, (list, tuple)):
        items = [map_paths(v, fn, key) for v in value]
        return type(value)(items) if any(a is not b for a, b in zip(items, value)) else value
    if isinstance(value, (Path, Parcel)) or (key in INPUT_FIELDS and isinstance(value, str) and value):
        return fn(value)
    return value


def pack(request: Any, settings: Settings, put: Callable[[bytes], Any]) -> Any:
    """The request with each readable input file's bytes `put` into the object store (each file once)."""
    packed: dict[Path, Parcel] = {}

    def one(value: Any) -> Any:
        path = Path(value)
        if not path.is_file():
            return value  # not here (or not a path): the replica reports it as the local backend would
        if path not in packed:
            packed[path] = _parcel(path, settings, put)
        return packed[path]

    return map_paths(request, one)


def _parcel(path: Path, settings: Settings, put: Callable[[bytes], Any]) -> Parcel:
    size = path.stat().st_size
    if size > settings.max_input_bytes:
        return Parcel(str(path), size=size)  # not read: the replica's size check refuses it with the usual message
    companions = {}
    if path.suffix.lower() in WITH_COMPANIONS:
        for other in sorted(path.parent.iterdir()):
            if other.suffix.lower() in COMPANION_SUFFIXES and other.is_file() and \
                    other.stat().st_size <= settings.max_input_bytes:
                companions[other.name] = put(other.read_bytes())
    return Parcel(str(path), put(path.read_bytes()), size, companions)


class Unpacked:
    """A packed request's files written to a folder of this replica (removed on exit), and the way back to the
    original paths for the result's parameters."""

    def __init__(self, request: Any, get: Callable[[Any], bytes]):
        self.folder = Path(tempfile.mkdtemp(prefix="nstdiff-job-"))
        self.originals: dict[str, str] = {}
        self.request = map_paths(request, lambda parcel: self._write(parcel, get) if isinstance(parcel, Parcel)
                                 else parcel)

    def _write(self, parcel: Parcel, get: Callable[[Any], bytes]) -> Path:
        original = Path(parcel.original)
        folder = self.folder / str(len(self.originals))
        folder.mkdir()
        for name, ref in parcel.companions.items():
            (folder / name).write_bytes(get(ref))
        path = folder / original.name
        if parcel.data is None:
            with open(path, "wb") as sparse:  # as large as the original, without its bytes: refused by its size
                sparse.truncate(parcel.size)
        else:
            path.write_bytes(get(parcel.data))
        self.originals[str(path)] = parcel.original
        return path

    def restore(self, value: Any) -> Any:
        """`value` (a result, its parameters) naming the original input paths instead of this replica's copies: the
        app's history keeps the inputs, and a video's result reads its sound from the app's copy of the clip."""
        return _replace_strings(value, self.originals)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _replace_strings(value: Any, replacements: dict[str, str]) -> Any:
    if isinstance(value, BaseModel):
        changed = {name: _replace_strings(getattr(value, name), replacements) for name in type(value).model_fields}
        return value.model_copy(update=changed)
    if isinstance(value, dict):
        return {k: _replace_strings(v, replacements) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_replace_strings(v, replacements) for v in value)
    if isinstance(value, (str, Path)) and str(value) in replacements:
        return type(value)(replacements[str(value)])
    return value
