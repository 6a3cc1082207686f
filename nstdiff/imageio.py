"""Reading user images safely and writing results atomically.

Every way an image can be unusable (unreadable, truncated, too large, odd mode) ends in an `InputError` that names
the file and says what to do; results are written to a temporary file and renamed, so a failed write leaves nothing.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from nstdiff.errors import InputError

# PIL only warns between its limit and twice it; `load_image` refuses by its own limit before decoding instead
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
from nstdiff.settings import Settings, get_settings


def _describe(ref: Path | Image.Image, role: str) -> str:
    return f"{role} image '{ref}'" if isinstance(ref, (str, Path)) else f"{role} image"


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and float scaled (not clipped), alpha composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
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


def load_image(ref: Path | str | Image.Image, role: str = "input", settings: Settings | None = None) -> Image.Image:
    """Open `ref` as an upright 8-bit RGB image, or raise an `InputError` that says what is wrong with it."""
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
        except OSError as exc:
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
        image.load()  # decode now, so truncation shows here and not halfway through a run
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{what} is damaged or truncated ({exc}); re-export it and try again") from None


def resize_long_side(image: Image.Image, side: int, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """Scale so the longest side is `side` pixels, keeping the aspect ratio."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, resample)


def check_writable(path: str | Path) -> Path:
    """Fail before any work if `path` cannot be written (missing folder, no permission, a directory)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"output path '{path}' is a folder; give a file name such as '{path / 'out.png'}'")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write '{path}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write '{path}': permission denied")
    return path


def atomic_write(path: str | Path, write) -> Path:
    """Call `write(tmp_path)` then rename onto `path`, so readers never see a partial file."""
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write '{path}': {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_png(image: Image.Image, path: str | Path, text: Mapping[str, str] | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))
