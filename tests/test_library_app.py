"""The style library and the readiness banners in the app: the gallery offers a painting as an upload, a style in words
runs without a diffusion model and its runners-up re-run with one click, and the tabs that need a missing model say so
(size, GPU, Fetch) before anyone presses Run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from nstdiff.settings import Settings
from tests.conftest import CALLER, no_progress
from tests.servers import RunningServer

STARRY = "vincent-van-gogh_the-starry-night"
RHONE = "vincent-van-gogh_starry-night-over-the-rhone"


def shown(update) -> str:
    """A Markdown output as gradio_client returns it (an update's value)."""
    return update["value"] if isinstance(update, dict) else update


@pytest.fixture
def app(isolated_settings, uploads):
    from ui.app import App

    return App(settings=isolated_settings.model_copy(update={"default_encoder": "random"}))


def component(demo, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def handler_of(demo, trigger, name: str = "text_style") -> object:
    """The function `name` that a click on `trigger` runs."""
    return next(fn for fn in demo.fns.values() if fn.name == name
                and any(target[0] == trigger._id for target in fn.targets)).fn


def test_a_gallery_click_offers_the_painting_as_an_upload(app, uploads, images):
    from nstdiff.library import get_painting
    from ui.files import uploaded
    from ui.library_gallery import add_to_styles, gallery_items

    items, ids = gallery_items(app)
    assert len(items) == len(ids) >= 20 and ids[0] == STARRY
    assert items[0][1] == "The Starry Night — Vincent van Gogh, 1889"
    assert all(Path(picture).resolve().is_relative_to(uploads.resolve()) for picture, _ in items)  # served copies
    with pytest.raises(Exception, match="not uploaded to this server"):  # a server path named in the request
        add_to_styles(app, [str(images["red"])], ids, 0)
    mine = str(shutil.copy(images["red"], uploads / "mine.png"))
    styles = add_to_styles(app, [mine], ids, 0)
    assert styles[0] == str(Path(mine).resolve()) and len(styles) == 2
    assert uploaded(styles[1]) == str(Path(styles[1]).resolve())  # counts as an upload: the form accepts it
    assert Path(styles[1]).read_bytes() == get_painting(STARRY).path.read_bytes()


def test_words_without_a_diffusion_model_and_the_next_best_buttons(app, random_magenta, uploads, images):
    from ui.library_gallery import runners_up

    demo = app.build()
    content = str(shutil.copy(images["content"], uploads / "photo.png"))
    form = [content, "Van Gogh starry swirls", "none", "", 0.8, "none", "sd15", False, 32, 2, 1,
            None, None, None, 0.8, 0.8, 0.8, "", ""]  # … the LoRA slots, Only / Except
    run = handler_of(demo, component(demo, "text-run"))
    path, info = list(run(*form, request=CALLER, progress=no_progress))[-1]
    assert "style library: 'The Starry Night' — Vincent van Gogh, 1889" in info and "gram" in info
    others = runners_up(app, path)
    assert [o["id"] for o in others][0] == RHONE and len(others) == 2
    rerun = handler_of(demo, component(demo, "text-next-0"))
    path, info = list(rerun(*form, others[0]["id"], request=CALLER, progress=no_progress))[-1]
    assert "style library: 'Starry Night Over the Rhône'" in info
    entry = app.store.get(Path(path).stem)
    assert entry.parameters["library"]["painting"]["id"] == RHONE
    assert STARRY in [o["id"] for o in runners_up(app, path)]  # the first choice is now one click away
    assert runners_up(app, None) == [] and runners_up(app, "/no/such/result.png") == []
    # "use these settings" on a result of words takes them back to Text style (not Image style, whose method ran)
    values = handler_of(demo, component(demo, "reuse"), "use")(entry.id)
    text = next(tab for tab in app.refills.tabs if tab.label == "Text style")
    start = sum(len(tab.widgets) for tab in app.refills.tabs[:app.refills.tabs.index(text)])
    refilled = values[start:start + len(text.widgets)]
    assert values[-1] == "Text style" and Path(refilled[0]).name == "photo.png"
    assert refilled[1:5] == ["Van Gogh starry swirls", "none", "", 0.8] and refilled[8:11] == [32, 2, 1]


def test_preset_gallery_shows_each_preset_with_its_painting(app, random_magenta):
    from ui.library_gallery import preset_thumbnails

    presets = [p for p in app.executor.presets() if p.name in ("ukiyo-e", "van-gogh")]
    update, names = preset_thumbnails(app, presets, progress=no_progress)
    assert names == [p.name for p in presets]
    captions = [caption for _, caption in update["value"]]
    assert any(c.startswith("Ukiyo-e") and "after The Great Wave off Kanagawa" in c for c in captions)
    assert all(Image.open(picture).size[0] <= 160 for picture, _ in update["value"])


def test_choosing_chain_in_image_style_shows_what_it_needs_and_run_explains(app, uploads, images):
    demo = app.build()
    method, banner = component(demo, "method"), component(demo, "image-readiness")
    assert not banner.visible  # auto needs no diffusion model: no banner
    refresh = next(fn for fn in demo.fns.values() if any(t[0] == method._id for t in fn.targets)
                   and banner in fn.outputs).fn
    text, fetch = refresh("chain")
    assert text["visible"] and "Chain (a classic result refined by diffusion) needs Stable Diffusion 1.5" in text["value"]
    assert "Gram or AdaIN alone" in text["value"] and not fetch["visible"]  # downloads are off in this test
    assert refresh("gram")[0]["visible"] is False
    form = dict(content=str(shutil.copy(images["content"], uploads / "p.png")),
                styles=[str(shutil.copy(images["red"], uploads / "s.png"))], weights="", method="chain", strength=0.8,
                preserve_color="none", style_scale=1.0, size=32, steps=2, seed=1, encoder="random", mask_file=None,
                mask_paint=None, quality="balanced")
    with pytest.raises(Exception, match=r"Chain .* needs Stable Diffusion 1.5 .*not on this machine"):
        list(app.stylize(form, CALLER, no_progress))
    assert app.store.list() == []  # the classic half did not run first


def test_banners_and_run_buttons_say_what_is_missing(images, tmp_path):
    settings = Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", device="cpu",
                        allow_downloads=False, default_encoder="random")
    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        text = shown(client.predict("sd15", api_name="/text_readiness"))
        assert "Text style needs Stable Diffusion 1.5 (`sd15`): not on this machine** (about 4.3 GB" in text
        assert "needs a GPU to be practical" in text and "matched to a painting of the style library" in text
        assert "downloads are off here" in text
        reference = shown(client.predict("sdxl", api_name="/ref_readiness"))
        assert "Stable Diffusion XL (`sdxl`, 13.9 GB) and its IP-Adapter (`sdxl-ip-adapter`, 7.0 GB)" in reference
        assert "(about 20.8 GB to download)" in reference
        lora = shown(client.predict("sd15", api_name="/lora_readiness"))
        assert "Training a LoRA needs Stable Diffusion 1.5" in lora and "fast style networks below" in lora
        with pytest.raises(Exception, match=r"Style reference needs Stable Diffusion 1.5 \(`sd15`, 4.3 GB\) and its "
                                            r"IP-Adapter .*not on this machine"):
            client.predict(content=handle_file(str(images["content"])), style=handle_file(str(images["red"])),
                           prompt="", mode="style", reference_scale=1.0, strength=0.8, structure="none",
                           family="sd15", fast=False, size=64, steps=2, seed=1, api_name="/style_reference")
        with pytest.raises(Exception, match="downloads are disabled"):
            client.predict("sd15", api_name="/text_fetch")
    finally:
        server.stop()


def test_fetch_in_the_banner_brings_the_model_and_the_banner_clears(diffusion_models, tmp_path, monkeypatch):
    from nstdiff.executor import InProcessExecutor

    settings = Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", models_dir=tmp_path / "models",
                        device="cpu", allow_downloads=True, default_encoder="random")
    fetched = []

    def fake_fetch(self, name, message=None):  # what a download would leave, without the network
        message(f"downloading {name}…")
        fetched.append(name)
        shutil.copytree(diffusion_models / "diffusion" / name, settings.models_path / "diffusion" / name)

    monkeypatch.setattr(InProcessExecutor, "fetch_model", fake_fetch)
    from nstdiff.diffusion.readiness import readiness
    from ui.readiness import _views

    _, button = _views(readiness("text", "sd15", settings))
    assert button["value"] == "Fetch sd15 (4.3 GB)" and button["visible"]
    _, hidden = _views(readiness("text", "sd15", settings.model_copy(update={"allow_downloads": False})))
    assert not hidden["visible"]  # nothing to press where downloads are off: the banner says what to do
    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        assert "not on this machine" in shown(client.predict("sd15", api_name="/text_readiness"))
        text = shown(client.predict("sd15", api_name="/text_fetch"))
        assert fetched == ["sd15"] and "The diffusion model is on disk, but there is no GPU here" in text
    finally:
        server.stop()
