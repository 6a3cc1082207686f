"""AdaIN speed: the optimisation variant, and the feed-forward (decoder) variant when a trained decoder exists.

    python benchmarks/adain_benchmark.py [--sizes 256,512] [--encoder vgg16] [--decoder PATH] [--device cpu|cuda]
                                         [--gram]

A feed-forward time means something only for a decoder that makes a picture, so it is measured with `--decoder PATH`
or with the decoder on disk for the encoder (one made by `nstdiff adain train`, or the paper's for vgg19-normalised);
without one, only the optimisation variant is timed, and the output says so. A freshly initialised decoder is never
timed: its output is nearly black. Targets: optimisation variant ≤ 20 s at 256 px on 2 CPU cores; feed-forward ≤ 1 s
on CPU and ≤ 10 ms at 512 px on a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from measuring import median_seconds  # noqa: E402 - beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--encoder", default="vgg16")
    parser.add_argument("--decoder", type=Path, help="a trained decoder file for the encoder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gram", action="store_true", help="also time the Gram method (default settings)")
    args = parser.parse_args()
    os.environ["NSTDIFF_DEVICE"] = args.device
    from safetensors import safe_open

    from nstdiff import ImageStyleRequest, stylize
    from nstdiff.commands.stylize import EXAMPLES
    from nstdiff.models.decoders import decoder_on_disk, decoder_path
    from nstdiff.settings import reload_settings

    settings = reload_settings()
    on_disk = decoder_path(args.encoder, settings) if decoder_on_disk(args.encoder, settings) else None
    decoder = args.decoder or on_disk
    if decoder is None:
        print(f"no trained decoder for {args.encoder} (none in {decoder_path(args.encoder, settings).parent}, no "
              "--decoder): timing the optimisation variant only")
    else:
        with safe_open(str(decoder), framework="pt") as handle:  # how it was made: steps and images, or its source
            print(f"feed-forward timed with the decoder {decoder} (metadata {handle.metadata()})")

    def run(method, size, steps=None, **options):
        return lambda: stylize(ImageStyleRequest(method=method, content=EXAMPLES / "photo.jpg",
                                                 styles=[EXAMPLES / "painting.jpg"], size=size, steps=steps, seed=0,
                                                 encoder=args.encoder, options=options))

    run("adain", 64, steps=1, variant="optimise")()  # warm-up: the encoder is loaded once
    for size in map(int, args.sizes.split(",")):
        rows = {}
        if decoder is not None:
            feed_forward = run("adain", size, variant="decoder", decoder=str(decoder))
            rows[f"adain decoder ({decoder.name})"] = median_seconds(feed_forward, 5)
        rows["adain optimise"] = median_seconds(run("adain", size, variant="optimise"), 1)
        if args.gram:
            rows["gram (default)"] = median_seconds(run("gram", size), 1)
        for name, value in rows.items():
            print(f"{size:5d} px  {name:40s} {value:8.3f} s  (device {args.device}, encoder {args.encoder})")


if __name__ == "__main__":
    main()
