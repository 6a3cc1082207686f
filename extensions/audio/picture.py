"""Spectrograms a person can read: the mel picture with a time axis (seconds) and a frequency axis (Hz), a title and
a dB scale note. Numpy, librosa and PIL only (no torch): the app's Audio tab draws them."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from extensions.audio.audioio import spectrogram_image

LEFT, BOTTOM, TOP, RIGHT = 58, 34, 24, 12  # margins for the axes' labels (px)
FREQUENCY_TICKS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def hertz(value: float) -> str:
    return f"{value / 1000:g} kHz" if value >= 1000 else f"{value:g} Hz"


def time_ticks(seconds: float) -> list[float]:
    """About six round tick positions over `seconds`."""
    if seconds <= 0:
        return [0.0]
    raw = seconds / 6
    step = min((s for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120) if s >= raw), default=raw)
    return [round(i * step, 3) for i in range(int(seconds / step) + 1)]


def labelled_spectrogram(samples: np.ndarray, sample_rate: int, title: str, width: int = 760,
                         height: int = 300) -> Image.Image:
    """The clip's mel spectrogram (`spectrogram_image`) with axes: time in seconds below, frequency on the mel scale
    at the left (its bands run from 0 Hz to half the sample rate, as librosa lays them out)."""
    import librosa

    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    plot = spectrogram_image(samples, sample_rate, width=plot_w, height=plot_h)
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(plot, (LEFT, TOP))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    ink = (40, 40, 40)
    draw.text((LEFT, 4), f"{title} · mel spectrogram, dB from -80 (dark) to peak (light)", fill=ink, font=font)
    draw.rectangle((LEFT - 1, TOP - 1, LEFT + plot_w, TOP + plot_h), outline=ink)
    seconds = len(samples) / sample_rate
    for tick in time_ticks(seconds):
        x = LEFT + round(tick / seconds * (plot_w - 1)) if seconds else LEFT
        draw.line((x, TOP + plot_h, x, TOP + plot_h + 4), fill=ink)
        draw.text((x, TOP + plot_h + 6), f"{tick:g}", fill=ink, font=font, anchor="ma")
    draw.text((LEFT + plot_w, height - 2), "time (s)", fill=ink, font=font, anchor="rd")
    top_mel, last = librosa.hz_to_mel(sample_rate / 2), height
    for frequency in FREQUENCY_TICKS:
        if frequency >= sample_rate / 2:
            break
        y = TOP + plot_h - round(librosa.hz_to_mel(frequency) / top_mel * (plot_h - 1))
        if last - y < 14:  # too close to the label below it (the mel scale packs the low notes)
            continue
        last = y
        draw.line((LEFT - 5, y, LEFT - 1, y), fill=ink)
        draw.text((LEFT - 7, y), hertz(frequency), fill=ink, font=font, anchor="rm")
    return canvas
