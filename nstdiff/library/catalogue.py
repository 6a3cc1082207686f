"""The paintings of the style library: the public-domain ones shipped in the package (`catalogue.toml`,
`paintings/`) and the person's own, added under `<models_dir>/styles/` (one checked JPEG and one JSON file each).

A person's image is opened with `load_image` (every check a style image gets), re-encoded by us as a JPEG of at most
`MAX_SIDE` px and stored under a name that passes `check_painting_id`: nothing of the original file but its pixels
is kept, and no caller's path becomes part of a stored path.
"""
from __future__ import annotations

import functools
import json
import re
import time
import tomllib
import unicodedata
from importlib import resources
from pathlib import Path

from pydantic import Field, ValidationError

from nstdiff.errors import InputError, format_validation_error
from nstdiff.models.diffusion_catalogue import Strict
from nstdiff.settings import Settings, get_settings

USER_FOLDER = "styles"  # under the models folder, beside the LoRAs and fast style networks
MAX_SIDE = 1024  # a person's painting is stored at most this large (the style side of a 1024 px run)
THUMB_SIDE = 192
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,79}$"
USER_LICENCE = "your own image: you are responsible for the right to use it"


class Painting(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    artist: str = Field("", max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=10)
    year: str = Field("", max_length=40)
    artist_death: int | None = None
    movement: str = Field("", max_length=200)
    medium: str = Field("", max_length=200)
    palette: list[str] = Field(default_factory=list, max_length=20)
    mood: list[str] = Field(default_factory=list, max_length=20)
    tags: list[str] = Field(default_factory=list, max_length=40)
    licence: str = Field(max_length=200)
    source: str = Field("", max_length=300)
    builtin: bool = False
    path: Path

    @property
    def label(self) -> str:
        """'The Starry Night' — Vincent van Gogh, 1889"""
        by = f" — {self.artist}" if self.artist else ""
        return f"'{self.title}'{by}" + (f", {self.year}" if self.year else "")

    def summary(self) -> dict[str, object]:
        """What a result's parameters record of the painting (no folder: the file's name only)."""
        return {"id": self.id, "title": self.title, "artist": self.artist, "year": self.year,
                "licence": self.licence, "file": self.path.name, "builtin": self.builtin}


def builtin_folder() -> Path:
    return Path(str(resources.files("nstdiff.library")))


@functools.lru_cache(maxsize=1)
def builtin_paintings() -> tuple[Painting, ...]:
    folder = builtin_folder()
    data = tomllib.loads((folder / "catalogue.toml").read_text(encoding="utf-8"))
    return tuple(Painting(**entry, builtin=True, path=folder / "paintings" / f"{entry['id']}.jpg")
                 for entry in data["painting"])


def user_folder(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).models_path / USER_FOLDER


def _user_paintings(settings: Settings) -> list[Painting]:
    paintings = []
    for meta in sorted(user_folder(settings).glob("*.json")):
        image = meta.with_suffix(".jpg")
        try:
            entry = json.loads(meta.read_text(encoding="utf-8"))
            paintings.append(Painting(**{**entry, "builtin": False, "path": image}))
        except (OSError, ValueError, TypeError, ValidationError):
            continue  # a damaged entry is left out of the list; `remove` still deletes it by id
        if not image.is_file():
            paintings.pop()
    return paintings


def list_paintings(settings: Settings | None = None) -> list[Painting]:
    """The built-in paintings, then the person's own (oldest first)."""
    settings = settings or get_settings()
    return [*builtin_paintings(), *_user_paintings(settings)]


def get_painting(painting_id: str, settings: Settings | None = None) -> Painting:
    paintings = {p.id: p for p in list_paintings(settings)}
    if painting_id not in paintings:
        import difflib

        close = difflib.get_close_matches(painting_id, paintings, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `nstdiff library list`"
        raise InputError(f"no painting '{painting_id}' in the style library{hint}")
    return paintings[painting_id]


def slug(text: str) -> str:
    """'Mon Étang!' → 'mon-etang' (ASCII letters, digits and hyphens)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:64].strip("-")


def check_painting_id(painting_id: str) -> str:
    if not re.match(ID_PATTERN, painting_id or ""):
        raise InputError(f"'{painting_id}' is not a usable painting name: use lowercase letters, digits, - and _ "
                         "(at most 80), starting with a letter or digit")
    return painting_id


def _words(values: list[str] | str | None) -> list[str]:
    if values is None:
        return []
    items = values.split(",") if isinstance(values, str) else values
    return [" ".join(str(item).split()).lower() for item in items if str(item).strip()]


def add_painting(image: Path | str, title: str, artist: str = "", tags: list[str] | str | None = None,
                 year: str = "", painting_id: str | None = None, settings: Settings | None = None) -> Painting:
    """Add a person's style image to the library: checked like any style image, stored as our own JPEG."""
    from nstdiff.imageio import atomic_write, load_image

    settings = settings or get_settings()
    title = " ".join((title or "").split())
    if not title:
        raise InputError("give the painting a title (it is how the library names it and matches words to it)")
    painting_id = check_painting_id(painting_id or slug(title))
    if any(p.id == painting_id for p in list_paintings(settings)):
        raise InputError(f"'{painting_id}' is already in the style library; choose another name (--name) or remove "
                         f"it first (`nstdiff library remove {painting_id}`)")
    picture = load_image(image, "style", settings, max_side=MAX_SIDE)
    folder = user_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        painting = Painting(id=painting_id, title=title, artist=" ".join((artist or "").split()),
                            year=str(year or "").strip(), tags=_words(tags), licence=USER_LICENCE,
                            source=f"added {time.strftime('%Y-%m-%d')}", path=folder / f"{painting_id}.jpg")
    except ValidationError as exc:
        raise InputError(f"invalid painting: {format_validation_error(exc)}") from None
    atomic_write(painting.path, lambda part: picture.save(part, format="JPEG", quality=90))
    meta = json.dumps(painting.model_dump(mode="json", exclude={"builtin", "path"}), indent=2)
    atomic_write(painting.path.with_suffix(".json"), lambda part: part.write_text(meta, encoding="utf-8"))
    return painting


def remove_painting(painting_id: str, settings: Settings | None = None) -> None:
    """Remove one of the person's paintings (the built-in ones stay)."""
    settings = settings or get_settings()
    check_painting_id(painting_id)
    if any(p.id == painting_id for p in builtin_paintings()):
        raise InputError(f"'{painting_id}' ships with nstdiff and cannot be removed")
    files = [user_folder(settings) / f"{painting_id}{suffix}" for suffix in (".json", ".jpg")]
    if not any(f.is_file() for f in files):
        raise InputError(f"no painting '{painting_id}' among your own in the style library")
    for file in files:
        file.unlink(missing_ok=True)


def thumbnail(painting: Painting, settings: Settings | None = None, side: int = THUMB_SIDE) -> Path:
    """A small JPEG of the painting in the cache folder, made once (again when the painting is newer)."""
    from PIL import Image

    from nstdiff.imageio import atomic_write

    settings = settings or get_settings()
    kind = "builtin" if painting.builtin else "own"
    path = settings.cache_dir / "library" / "thumbnails" / f"{kind}-{painting.id}-{side}.jpg"
    if path.is_file() and path.stat().st_mtime >= painting.path.stat().st_mtime:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(painting.path) as image:
        small = image.convert("RGB")
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
    atomic_write(path, lambda part: small.save(part, format="JPEG", quality=85))
    return path
