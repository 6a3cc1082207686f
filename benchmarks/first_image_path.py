"""A first-time person's path from opening the page to a first stylized image, scripted in a real browser.

    python benchmarks/first_image_path.py [--tree DIR] [--size 0] [--width 1440 --height 900]

Opens the app (a server started in this process, on the models in your cache) in headless Chromium at 1440×900,
uploads the bundled photo and painting, presses Stylize with the form's defaults, and waits for the first stylized
picture in the result, then for the stored result. It counts what a person would do: clicks (each upload is a click
on the drop area and one in the file dialog, then the Stylize button) and scrolls (each time the next thing to click,
or the result to look at, is outside the window). Seconds are the machine's: from the click to the first picture and
to the final result (the person's own time choosing files is not in them), and how many pictures the result showed
on the way (the instant result, live previews, the result).

`--tree DIR` runs another checkout (e.g. `git archive HEAD | tar -x -C /tmp/before`) with this script: "before".
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose app is measured")
    parser.add_argument("--size", type=int, default=0, help="type this size first (0: keep the form's default)")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import uvicorn
    from playwright.sync_api import sync_playwright

    from nstdiff.settings import Settings
    from ui.server import create_server

    examples = args.tree / "nstdiff" / "examples"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(outputs_dir=Path(tmp), device="cpu", allow_downloads=False)
        server = uvicorn.Server(uvicorn.Config(create_server(settings), host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        clicks = scrolls = 0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            opened = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#content").wait_for()
            loaded = time.perf_counter() - opened

            def reach(selector: str) -> None:
                """Count a scroll when `selector` is outside the window, then bring it in (as a person would)."""
                nonlocal scrolls
                box = page.locator(selector).first.bounding_box()
                if box is None or box["y"] < 0 or box["y"] + min(box["height"], 40) > args.height:
                    scrolls += 1
                    page.locator(selector).first.scroll_into_view_if_needed()

            for selector, file in (("#content", examples / "photo.jpg"), ("#styles", examples / "painting.jpg")):
                reach(selector)
                page.locator(f"{selector} input[type=file]").set_input_files(str(file))
                clicks += 2  # the drop area, then the file in the dialog
            if args.size:
                reach("#size")
                page.locator("#size input[type=number]").fill(str(args.size))
                page.locator("#size input[type=number]").press("Enter")
                clicks += 1
            page.wait_for_timeout(500)
            page.evaluate("""() => { window.pictures = new Set(); new MutationObserver(() => {
                const img = document.querySelector('#result img'); if (img) window.pictures.add(img.src); })
                .observe(document.body, {subtree: true, childList: true, attributes: true}); }""")
            reach("#stylize")
            pressed = time.perf_counter()
            page.locator("#stylize").click()
            clicks += 1
            page.locator("#result img").wait_for(timeout=args.timeout * 1000)
            first = time.perf_counter() - pressed
            reach("#result")  # to look at it
            deadline = time.time() + args.timeout
            while not list((Path(tmp) / "results").glob("*.png")) and time.time() < deadline:
                time.sleep(0.2)
            page.locator("#result-info").get_by_text("encoder").first.wait_for(timeout=args.timeout * 1000)
            final = time.perf_counter() - pressed
            shot = REPO / "artifacts" / "screenshots" / f"first_image_{args.tree.resolve().name}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
            info = page.locator("#result-info").inner_text().replace("\n", " ")
            pictures = page.evaluate("window.pictures.size")
            browser.close()
        server.should_exit = True
        thread.join(10)
    print(f"tree {args.tree.resolve()}  window {args.width}x{args.height}")
    print(f"page ready {loaded:.1f} s · clicks {clicks} · scrolls {scrolls} · actions {clicks + scrolls}")
    print(f"Stylize → first picture {first:.1f} s · → stored result {final:.1f} s · pictures shown meanwhile "
          f"{pictures} (instant result, live previews, result)")
    print(f"result: {info[:160]}")
    print(f"screenshot: {shot}")


if __name__ == "__main__":
    main()
