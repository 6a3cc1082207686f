"""AdaIN speed: feed-forward (decoder) and optimisation variants, beside the Gram method in the same run.

    python benchmarks/adain_benchmark.py [--sizes 256,512] [--encoder vgg16] [--device cpu|cuda] [--gram]

The feed-forward timing uses a decoder of the right shape; speed does not depend on its training, quality does (a
decoder trained with `nstdiff adain train` goes in the models folder). Targets: optimisation variant ≤ 20 s at 256 px
on 2 CPU cores; feed-forward ≤ 1 s on CPU and ≤ 10 ms at 512 px on a GPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--encoder", default="vgg16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gram", action="store_true", help="also time the Gram method (default settings)")
    args = parser.parse_args()
    os.environ["NSTDIFF_DEVICE"] = args.device
    from nstdiff import ImageStyleRequest, stylize
    from nstdiff.cli import EXAMPLES
    from nstdiff.models.decoders import AdaINDecoder
    from nstdiff.models.weights import save_safetensors
    from nstdiff.settings import reload_settings

    reload_settings()
    with tempfile.TemporaryDirectory() as tmp:
        decoder = Path(tmp) / "decoder.safetensors"
        save_safetensors(AdaINDecoder(), decoder, {"encoder": args.encoder})
        for size in map(int, args.sizes.split(",")):
            def run(method, **options):
                return lambda: stylize(ImageStyleRequest(method=method, content=EXAMPLES / "photo.jpg",
                                                         styles=[EXAMPLES / "painting.jpg"], size=size, seed=0,
                                                         encoder=args.encoder, options=options))

            run("adain", variant="decoder", decoder=str(decoder))()  # warm-up: encoder loaded once
            rows = {"adain feed-forward": seconds(run("adain", variant="decoder", decoder=str(decoder)), 5),
                    "adain optimise": seconds(run("adain", variant="optimise"), 1)}
            if args.gram:
                rows["gram (default)"] = seconds(run("gram"), 1)
            for name, value in rows.items():
                print(f"{size:5d} px  {name:20s} {value:8.3f} s  (device {args.device}, encoder {args.encoder})")


if __name__ == "__main__":
    main()
