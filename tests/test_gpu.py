"""The CUDA path: the same requests as the CPU tests, on the GPU (skipped where no CUDA device is visible)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.settings import reload_settings

pytestmark = pytest.mark.gpu


def test_gram_with_every_control_on_cuda(images, tmp_path, monkeypatch):
    monkeypatch.setenv("NSTDIFF_DEVICE", "cuda")
    reload_settings()
    mask = np.zeros((40, 48, 3), np.uint8)
    mask[:, 24:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for preserve in ("histogram", "luminance"):
        result = stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], size=48, steps=10,
                                           seed=0, encoder="random",
                                           controls={"preserve_color": preserve, "mask": tmp_path / "mask.png"}))
        assert result.image.size == (48, 40)
        content = np.asarray(Image.open(images["content"]), float)
        assert np.abs(np.asarray(result.image, float)[:, :20] - content[:, :20]).max() <= 1
