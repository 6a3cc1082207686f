"""Thumbnails of the text presets: each preset rendered once on the bundled photo with the library painting closest
to it (`vocabulary.toml`), by the feed-forward network, and kept in the cache folder. Where that network cannot be
had (not on disk, downloads off), the painting's own thumbnail stands in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nstdiff.library.catalogue import Painting, builtin_paintings, thumbnail
from nstdiff.library.matching import match
from nstdiff.settings import Settings, get_settings

log = logging.getLogger(__name__)
PREVIEW_SIDE = 160
PHOTO = Path(__file__).resolve().parents[1] / "examples" / "photo.jpg"


@dataclass(frozen=True)
class PresetPreview:
    preset: str  # name
    title: str
    painting: Painting
    picture: Path
    rendered: bool  # False: the painting's thumbnail, not a render


def preset_painting(preset, settings: Settings | None = None) -> Painting:
    """The library painting closest to a preset: its name and title matched, with its vocabulary."""
    found = match(f"{preset.name} {preset.title}", k=1, settings=settings, fill=False)
    return found[0].painting if found else builtin_paintings()[0]


def _render(painting: Painting, path: Path, settings: Settings) -> None:
    from nstdiff.executor import InProcessExecutor
    from nstdiff.imageio import atomic_write
    from nstdiff.schema import ImageStyleRequest

    request = ImageStyleRequest(method="feedforward", content=PHOTO, styles=[painting.path], size=PREVIEW_SIDE,
                                seed=0)
    image = InProcessExecutor(settings).run(request).image
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda part: image.save(part, format="PNG"))


def preset_previews(presets: list, settings: Settings | None = None,
                    progress: Callable[[int, int, str], None] | None = None) -> list[PresetPreview]:
    """One preview per preset, rendered on first use (a few seconds for all on a CPU) and cached after."""
    from nstdiff.routing import feedforward_available

    settings = settings or get_settings()
    can_render = feedforward_available(settings)
    previews = []
    for index, preset in enumerate(presets):
        painting = preset_painting(preset, settings)
        path = settings.cache_dir / "library" / "presets" / f"{preset.name}--{painting.id}-{PREVIEW_SIDE}.png"
        if not path.is_file() and can_render:
            if progress:
                progress(index, len(presets), f"rendering the preset thumbnails ({index + 1}/{len(presets)})…")
            try:
                _render(painting, path, settings)
            except Exception as exc:  # noqa: BLE001 - a thumbnail is a nicety: the painting's own stands in
                log.warning("preset thumbnails not rendered (%s: %s); the paintings' own are shown",
                            type(exc).__name__, exc)
                can_render = False
        rendered = path.is_file()
        previews.append(PresetPreview(preset.name, preset.title, painting,
                                      path if rendered else thumbnail(painting, settings), rendered))
    return previews
