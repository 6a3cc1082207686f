"""What the web app adds to a request: queue, upload, encode, history, download, against a direct library call.

    python benchmarks/app_overhead.py [--size 256] [--steps 20] [--encoder vgg16] [--repeats 3]

The same request runs alternately through `nstdiff.stylize` (direct) and through the app's `/stylize` endpoint with
`gradio_client` (app), on a server started in this process on a loopback port. Overhead = app wall time − direct
wall time; target: under 10 % of the direct time at 256 px. Few steps make the method short, so the ratio is a
pessimistic one (default settings run ~150 steps).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gradio_client import Client, handle_file  # noqa: E402

from nstdiff import ImageStyleRequest, stylize  # noqa: E402
from nstdiff.commands.stylize import EXAMPLES  # noqa: E402
from nstdiff.settings import Settings  # noqa: E402
from tests.servers import RunningServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--encoder", default="vgg16")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    content, style = EXAMPLES / "photo.jpg", EXAMPLES / "painting.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(outputs_dir=Path(tmp), device="cpu")
        request = ImageStyleRequest(content=content, styles=[style], size=args.size, steps=args.steps, seed=0,
                                    encoder=args.encoder)
        stylize(request)  # warm-up: encoder loaded and cached, as in a running server
        server = RunningServer(settings)
        client = Client(server.url, verbose=False)
        form = dict(content=handle_file(str(content)), styles=[handle_file(str(style))], weights="", method="gram",
                    strength=0.7, preserve_color="none", style_scale=1.0, size=args.size, steps=args.steps, seed=0,
                    encoder=args.encoder, mask_file=None, mask_paint=None)
        client.predict(**form, api_name="/stylize")  # warm-up of the app path
        direct, app = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            stylize(request)
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.predict(**form, api_name="/stylize")
            app.append(time.perf_counter() - start)
        server.stop()
    d, a = statistics.median(direct), statistics.median(app)
    print(f"{args.size} px, {args.steps} steps, encoder {args.encoder}, {args.repeats} repeats (medians)")
    print(f"direct library call: {d:.2f} s   through the app: {a:.2f} s")
    print(f"overhead: {a - d:+.2f} s = {100 * (a - d) / d:+.1f} % of the direct call (target < 10 %)")


if __name__ == "__main__":
    main()
