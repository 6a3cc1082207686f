"""What a training run writes for people and other processes to follow: `state.json`, the loss log and its curve."""
from __future__ import annotations

import csv
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from nstdiff.errors import Cancelled
from nstdiff.imageio import atomic_write, save_png
from nstdiff.training.lora_data import LoraState


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


class StateFile:
    """`state.json`, rewritten atomically every step so another process can follow the job."""

    def __init__(self, path: Path, steps: int, enabled: bool):
        self.path, self.enabled = path, enabled
        self.state = LoraState(status="running", steps=steps, pid=os.getpid())

    def update(self, **values: Any) -> None:
        if not self.enabled:
            return
        self.state = self.state.model_copy(update={**values, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        write_json(self.path, self.state.model_dump(mode="json"))

    @contextmanager
    def recording_the_end(self):
        """A run that raises leaves the job cancelled (its message naming the checkpoint to resume from) or failed."""
        try:
            yield
        except (Cancelled, KeyboardInterrupt) as exc:
            self.update(status="cancelled")
            if isinstance(exc, Cancelled):
                kept = self.state.last_checkpoint
                exc.args = (f"cancelled at step {exc.step}/{exc.total}; " + (
                    f"{kept} is kept: run the same command again to resume from it" if kept else
                    "no checkpoint was reached yet"),)
            raise
        except Exception as exc:
            self.update(status="failed", error=str(exc)[:2000])
            raise


def draw_loss_curve(losses: list[float], path: Path, size: tuple[int, int] = (640, 320)) -> Path:
    """The loss per step (grey) and its running mean over ~5 % of the steps (blue), drawn with PIL."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, width - 15, 15, height - 30
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    if losses:
        low, high = min(losses), max(losses)
        span = (high - low) or 1.0
        window = max(1, len(losses) // 20)
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]

        def point(i: int, value: float) -> tuple[float, float]:
            x = left + (right - left) * (i / max(1, len(losses) - 1))
            return x, bottom - (bottom - top) * (value - low) / span

        for series, colour in ((losses, (190, 190, 190)), (smooth, (30, 90, 200))):
            points = [point(i, v) for i, v in enumerate(series)]
            draw.line(points if len(points) > 1 else points * 2, fill=colour, width=2)
        draw.text((4, top), f"{high:.3g}", fill="black")
        draw.text((4, bottom - 10), f"{low:.3g}", fill="black")
        draw.text((left, bottom + 8), "step 1", fill="black")
        draw.text((right - 70, bottom + 8), f"step {len(losses)}", fill="black")
    draw.text((width // 2 - 15, bottom + 8), "loss", fill="black")
    return save_png(image, path)


def read_losses(path: Path, up_to: int | None = None) -> list[tuple[int, float, float]]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                step = int(row["step"])
                rows.append((step, float(row["loss"]), float(row["seconds"])))
            except (KeyError, TypeError, ValueError):  # a line cut by a kill
                continue
    return [r for r in rows if up_to is None or r[0] <= up_to]


def start_loss_log(path: Path, start: int) -> None:
    """Keep the rows up to `start`, the step training resumes after: the steps past the checkpoint are run again."""
    header = ["step", "loss", "content", "style", "seconds"]
    kept = []
    if start and path.is_file():
        with open(path, newline="") as old:
            kept = [row for row in csv.reader(old) if row and row[0].isdigit() and int(row[0]) <= start]
    with open(path, "w", newline="") as log_file:
        csv.writer(log_file).writerows([header, *kept])
