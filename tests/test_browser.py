"""One real browser session: open the app, upload a photo and a style, press Stylize, get the picture.

Needs Debian's chromium (`.ci/run` installs it) and Playwright from PyPI; the screenshot is kept under
artifacts/browser/ for a person to look at.
"""
from __future__ import annotations

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
    settings = Settings(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", device="cpu",
                        allow_downloads=False, default_encoder="random")
    server = RunningServer(settings)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(server.url)
            page.locator("#content input[type=file]").set_input_files(str(images["content"]))
            page.locator("#styles input[type=file]").set_input_files(str(images["red"]))
            page.locator("#size input[type=number]").fill("64")
            page.locator("#size input[type=number]").press("Enter")
            page.locator("#steps input").fill("5")
            page.locator("#steps input").press("Tab")
            page.locator("#stylize").click()
            result = page.locator("#result img")
            result.wait_for(state="visible", timeout=120_000)
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
