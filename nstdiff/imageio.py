"""Reading user images safely and writing results atomically.

Every way an image can be unusable (unreadable, truncated, too large, odd mode) ends in an `InputError` that names
the file and says what to do; results are written to a temporary file and renamed, so a failed write leaves nothing,
and only ever onto a new name or a regular file (never a device, pipe, socket, link or folder).
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import warnings
from pathlib import Path
from typing import Collection, Mapping

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from nstdiff.errors import InputError

# PIL only warns between its limit and twice it; `load_image` refuses by its own limit before decoding instead
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# PIL's own notes on a damaged file ("Corrupt EXIF data") would print before our one-line message
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
from nstdiff.settings import Settings, get_settings


def _describe(ref: Path | Image.Image, role: str) -> str:
    return f"{role} image '{ref}'" if isinstance(ref, (str, Path)) else f"{role} image"


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and float scaled (not clipped), alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F" and array.max() <= 1.0:
            high = 1.0
        gray = np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(ref: Path | str | Image.Image, role: str = "input", settings: Settings | None = None,
               max_side: int | None = None) -> Image.Image:
    """Open `ref` as an upright 8-bit RGB image, or raise an `InputError` that says what is wrong with it.

    With `max_side`, a larger image comes back already scaled to that long side (as `resize_long_side` would), a
    JPEG decoded at a reduced scale: a 24 MP photo for a 64 px result costs a fraction of its full decode.
    """
    settings = settings or get_settings()
    what = _describe(ref, role)
    if isinstance(ref, Image.Image):
        image = ref
    else:
        path = Path(ref)
        if not path.is_file():
            raise InputError(f"{what} does not exist or is not a file")
        size = path.stat().st_size
        if size > settings.max_input_bytes:
            raise InputError(
                f"{what} is {size / 2**20:.1f} MiB, over the limit of {settings.max_input_bytes / 2**20:.0f} MiB; "
                "use a smaller file or raise NSTDIFF_MAX_INPUT_BYTES"
            )
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise InputError(
                f"{what} claims over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP (a decompression bomb?); images over "
                f"{settings.max_input_pixels / 1e6:.3g} MP are refused (NSTDIFF_MAX_INPUT_PIXELS)"
            ) from None
        except UnidentifiedImageError as exc:
            raise InputError(f"{what} is not a readable image ({exc}); use a PNG, JPEG, WebP, BMP or TIFF") from None
        except (OSError, ValueError) as exc:  # ValueError: e.g. a text chunk that inflates past Pillow's limit
            raise InputError(f"{what} is damaged or truncated ({exc}); re-export it and try again") from None
    pixels = image.width * image.height
    if pixels > settings.max_input_pixels:
        raise InputError(
            f"{what} is {image.width}x{image.height} = {pixels / 1e6:.3g} MP, over the limit of "
            f"{settings.max_input_pixels / 1e6:.3g} MP; downscale it or raise NSTDIFF_MAX_INPUT_PIXELS"
        )
    if image.width < 1 or image.height < 1:
        raise InputError(f"{what} is empty (0 pixels)")
    try:
        if max_side and max(image.size) > max_side:
            width, height = fit_long_side(image.size, max_side)
            image.draft(None, (2 * width, 2 * height))  # JPEG: decode at the smallest scale still 2× the target
        image.load()  # decode now, so truncation shows here and not halfway through a run
        image = _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{what} is damaged or truncated ({exc}); re-export it and try again") from None
    return resize_long_side(image, max_side) if max_side and max(image.size) > max_side else image


def fit_long_side(size: tuple[int, int], side: int) -> tuple[int, int]:
    """(width, height) with the longest side `side` and the aspect ratio kept, at least 1 pixel each way."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize_long_side(image: Image.Image, side: int, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """Scale so the longest side is `side` pixels, keeping the aspect ratio."""
    size = fit_long_side(image.size, side)
    return image if size == image.size else image.resize(size, resample)


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_SAVE_OPTIONS = {"PNG": {}, "JPEG": {"quality": 95}, "WEBP": {"lossless": True}}
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a device"),
               (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def check_writable(path: str | Path, suffixes: Collection[str] | None = None) -> Path:
    """Fail before any work if `path` cannot take a result: its folder is missing or read-only, it is anything but
    a new name or a regular file, or (with `suffixes`) its suffix names a format the result cannot be written in."""
    given = path
    path = Path(path).expanduser()
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InputError(f"cannot write '{given}': {exc.strerror or exc}") from None
    for is_kind, kind in _FILE_KINDS if mode is not None else ():
        if is_kind(mode):
            fix = f"give a file name such as '{path / 'out.png'}'" if kind == "a folder" else \
                "give the name of a new or regular file"
            raise InputError(f"output '{given}' is {kind}, and nstdiff writes only regular files; {fix}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(f"cannot write '{given}': the suffix picks the format, and this result is written as "
                         f"{', '.join(suffixes)}; name the output with one of those")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write '{given}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK) or (mode is not None and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write '{given}': permission denied")
    return path


def _new_part_file(folder: Path, name: str) -> Path:
    """An empty file beside the target, created as any new file is: 0666 less the umask (mkstemp's 0600 would
    leave every result readable by its owner only)."""
    while True:
        part = folder / f".{name}.{secrets.token_hex(4)}.part"
        try:
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return part
        except FileExistsError:
            continue


def atomic_write(path: str | Path, write) -> Path:
    """Check `path` (see `check_writable`), call `write(part_path)`, then rename onto `path`, so readers never see a
    partial file and a failed write leaves the old one."""
    path = check_writable(path)
    try:
        part = _new_part_file(path.parent, path.name)
    except OSError as exc:
        raise InputError(f"cannot write '{path}': {exc.strerror or exc}") from None
    try:
        write(part)
        os.replace(part, path)
    except OSError as exc:
        raise InputError(f"cannot write '{path}': {exc.strerror or exc}") from None
    finally:
        if part.exists():
            part.unlink()
    return path


def save_image(image: Image.Image, path: str | Path, text: Mapping[str, str] | None = None) -> Path:
    """Write `image` as its suffix says (.png, .jpg/.jpeg, .webp) with `text` as metadata: PNG iTXt chunks; for JPEG
    and WebP the same pairs as JSON in the EXIF UserComment."""
    path = check_writable(path, IMAGE_FORMATS)
    kind = IMAGE_FORMATS[path.suffix.lower()]
    options = dict(_SAVE_OPTIONS[kind])
    if kind == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        for key, value in (text or {}).items():
            options["pnginfo"].add_itxt(key, value)
    elif text:
        exif = Image.Exif()
        comment = "ASCII\0\0\0" + json.dumps(dict(text))  # EXIF's charset prefix; json.dumps escapes to ASCII
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = comment
        options["exif"] = exif
    return atomic_write(path, lambda part: image.save(part, format=kind, **options))


save_png = save_image  # the name nstdiff/store.py and nstdiff/training/lora.py import (for .png paths only)
