"""One real browser session: open the app, upload a photo and a style, press Stylize, get the picture.

Needs Debian's chromium (`.ci/run` installs it) and Playwright from PyPI; the screenshot is kept under
artifacts/browser/ for a person to look at.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from nstdiff.settings import Settings
from nstdiff.store import Store
from tests.servers import RunningServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def test_stylize_in_the_browser(images, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    settings = offline_settings(tmp_path)
    server = RunningServer(settings)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(server.url)
            fill_image_form(page, images, size=64, steps=5)
            page.locator("#stylize").click()
            # the result's description (live previews show first, in the same place)
            page.locator("#result-info").get_by_text("encoder random").wait_for(timeout=120_000)
            assert page.locator("#result img").is_visible()
            assert "encoder **random**" not in page.locator("#result-info").inner_text()  # rendered, not raw
            assert "random" in page.locator("#result-info").inner_text()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "stylize.png"), full_page=True)
            page.locator("#example").click()  # one button: fills the bundled example and runs it
            store, deadline = Store(settings.outputs_dir), time.time() + 180
            while len(store.list()) < 2:
                assert time.time() < deadline, "the example did not finish"
                time.sleep(0.2)
            example = store.list()[0]
            assert example.parameters["size"] == 256
            page.locator("#result-info").get_by_text(f"seed {example.seed}").wait_for(timeout=30_000)
            assert "photo" in page.locator("#content").inner_text()  # the bundled photo was filled in
            page.screenshot(path=str(ARTIFACTS / "example.png"), full_page=True)
            page.get_by_role("tab", name="Text style").click()  # choosing a preset shows it and sets its strength
            page.locator("#text-preset input").fill("ukiyo")
            page.get_by_role("option", name="Ukiyo-e woodblock (ukiyo-e)").click()
            page.get_by_text("ukiyo-e woodblock print, flat colours").wait_for(timeout=30_000)
            assert page.locator("#text-strength input[type=number]").input_value() == "0.7"
            page.screenshot(path=str(ARTIFACTS / "text_style.png"), full_page=True)
            browser.close()
    finally:
        server.stop()


SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


def offline_settings(tmp_path: Path) -> Settings:
    """A server of this test's own: its folders, the CPU, no downloads, the random encoder (no weights needed)."""
    return Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", device="cpu",
                    allow_downloads=False, default_encoder="random")


def open_app(playwright_api, settings):
    """(server, playwright, browser, page) at 1440×900, the screen the layout is made for."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    server = RunningServer(settings)
    p = playwright_api.sync_playwright().start()
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(server.url)
    return server, p, browser, page


def fill_image_form(page, images, size: int, steps: int, seed: int | None = None) -> None:
    """The Image style form: the test photo and painting, the size, the steps (and the seed)."""
    page.locator("#content input[type=file]").set_input_files(str(images["content"]))
    page.locator("#styles input[type=file]").set_input_files(str(images["red"]))
    page.locator("#size input[type=number]").fill(str(size))
    page.locator("#size input[type=number]").press("Enter")
    for field, value in (("steps", steps), ("seed", seed)):
        if value is not None:
            page.locator(f"#{field} input").fill(str(value))
            page.locator(f"#{field} input").press("Tab")


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 40) <= 900


# records each picture the result shows while its text says "Live preview"
WATCH_PREVIEWS = """() => {
  window.previews = new Set();
  const note = () => {
    const img = document.querySelector('#result img'), info = document.querySelector('#result-info');
    if (img && info && info.innerText.includes('Live preview')) window.previews.add(img.src);
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     characterData: true});
}"""


def test_live_preview_ctrl_enter_cancel_and_layout_in_the_browser(images, tmp_path, monkeypatch):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    monkeypatch.setattr("nstdiff.context.PREVIEW_EVERY", 0.2)  # the server runs in this process
    settings = offline_settings(tmp_path)
    server, p, browser, page = open_app(playwright, settings)
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # run button and result in view together at 1440×900, also with the inputs scrolled to their end
        assert in_view(page, "#stylize") and in_view(page, "#result")
        fill_image_form(page, images, size=64, steps=150)
        page.locator("#style-pictures img").first.wait_for(timeout=30_000)  # the style shown as a picture
        page.mouse.move(400, 600)
        page.mouse.wheel(0, 3000)
        page.wait_for_timeout(300)
        assert in_view(page, "#stylize") and in_view(page, "#result"), "the result column did not stay in view"
        page.evaluate(WATCH_PREVIEWS)
        page.keyboard.press("Control+Enter")  # runs the open tab's job
        page.locator("#result-info").get_by_text("Live preview").wait_for(timeout=60_000)
        deadline, seen = time.time() + 30, []  # the time left, at the current level's pace, under the preview
        while not re.search(r"≈ (\d+ (h|min|s) ?)+left", seen[-1] if seen else ""):
            assert time.time() < deadline, f"no time left was shown: {seen[-5:]}"
            page.wait_for_timeout(100)
            seen.append(page.locator("#result-info").inner_text())
        page.screenshot(path=str(SCREENSHOTS / "image_style_live_preview.png"))
        store, deadline = Store(settings.outputs_dir), time.time() + 180
        while not store.list():
            assert time.time() < deadline, "the run did not finish"
            time.sleep(0.2)
        page.locator("#result-info").get_by_text("encoder").first.wait_for(timeout=30_000)
        assert page.evaluate("window.previews.size") >= 2, "the live preview did not update twice"
        # Cancel: a long run, stopped; the result area says Cancelled, nothing says Error, no stale "Cancelling"
        page.locator("#steps input").fill("5000")
        page.locator("#steps input").press("Tab")
        page.locator("#stylize").click()
        page.locator("#result-info").get_by_text("Live preview").wait_for(timeout=60_000)
        page.locator("#cancel").click()
        page.locator("#result-info").get_by_text("Cancelled").wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        assert page.get_by_text("Error", exact=True).count() == 0
        assert "Cancelling" not in page.locator("#status").inner_text()
        assert len(store.list()) == 1  # the cancelled run kept nothing
        page.screenshot(path=str(SCREENSHOTS / "image_style_cancelled.png"))
    finally:
        browser.close()
        p.stop()
        server.stop()


def test_a_png_dropped_on_history_restores_its_settings_and_every_tab_renders(images, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    settings = offline_settings(tmp_path)
    server, p, browser, page = open_app(playwright, settings)
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        fill_image_form(page, images, size=48, steps=7, seed=4321)
        page.locator("#stylize").click()
        page.locator("#result-info").get_by_text("seed 4321").wait_for(timeout=120_000)
        page.screenshot(path=str(SCREENSHOTS / "image_style.png"))
        (entry,) = Store(settings.outputs_dir).list()
        dropped = tmp_path / "from_a_friend.png"
        dropped.write_bytes(entry.output.read_bytes())
        page.locator("#seed-random").click()  # the dice: back to a random seed
        page.locator("#steps input").fill("0")
        page.locator("#steps input").press("Tab")
        assert page.locator("#seed input").input_value() == "-1"
        for tab in [t.inner_text().strip() for t in page.get_by_role("tab").all()]:
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(400)
            name = tab.lower().replace(" ", "_").replace("3d", "mesh")
            page.screenshot(path=str(SCREENSHOTS / f"tab_{name}.png"))
        page.get_by_role("tab", name="History").click()
        page.locator("#settings-png input[type=file]").set_input_files(str(dropped))
        page.locator("#settings-png-info").get_by_text("nstdiff").wait_for(state="attached", timeout=30_000)
        page.locator("#stylize").wait_for(state="visible", timeout=30_000)  # switched to Image style
        assert page.locator("#seed input").input_value() == "4321"
        assert page.locator("#steps input").input_value() == "7"
        page.screenshot(path=str(SCREENSHOTS / "settings_from_png.png"))
    finally:
        browser.close()
        p.stop()
        server.stop()


def test_a_style_in_words_without_a_diffusion_model_and_the_style_library(images, tmp_path, random_magenta):
    """No diffusion model here: Text style says so at its top (model and size), the words still give an image after a
    Van Gogh of the style library, a runner-up is one click away, and the library's gallery fills Image style."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    settings = offline_settings(tmp_path)
    server, p, browser, page = open_app(playwright, settings)
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.get_by_role("tab", name="Text style").click()
        banner = page.locator("#text-readiness")
        banner.get_by_text("not on this machine").wait_for(timeout=30_000)
        assert "Stable Diffusion 1.5" in banner.inner_text() and "4.3 GB" in banner.inner_text()
        page.locator("#text-content input[type=file]").set_input_files(str(images["content"]))
        page.locator("#text-prompt textarea").fill("Van Gogh starry swirls")
        page.locator("#text-size input[type=number]").fill("64")
        page.locator("#text-size input[type=number]").press("Enter")
        page.locator("#text-steps input").fill("2")
        page.locator("#text-steps input").press("Tab")
        page.locator("#text-run").click()
        info = page.locator("#text-info")
        info.get_by_text("style library: 'The Starry Night' — Vincent van Gogh").wait_for(timeout=120_000)
        page.locator("#text-result img").wait_for(state="visible", timeout=30_000)
        result = page.locator("#text-result img")  # a 64 px result is enlarged to the frame, not shown as a stamp
        assert result.bounding_box()["width"] >= 300 and result.evaluate("e => getComputedStyle(e).objectFit") == \
            "contain"
        runner_up = page.locator("#text-next-0")
        runner_up.wait_for(state="visible", timeout=30_000)
        assert "Starry Night Over the Rhône" in runner_up.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "text_style_library.png"))
        runner_up.click()
        info.get_by_text("style library: 'Starry Night Over the Rhône'").wait_for(timeout=120_000)
        assert len(Store(settings.outputs_dir).list()) == 2
        page.get_by_role("tab", name="Image style").click()
        page.get_by_text("Style library:").first.click()  # open the accordion
        page.locator("#image-library img").first.click()  # The Starry Night, first in the catalogue
        page.locator("#styles").get_by_text("vincent-van-gogh_the-starry-night").wait_for(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "image_style_library.png"))
    finally:
        browser.close()
        p.stop()
        server.stop()
