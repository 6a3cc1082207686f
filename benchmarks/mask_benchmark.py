"""Masks from words: seconds per mask at 512 px, and the overhead a mask adds to a Gram stylization (ratio).

    python benchmarks/mask_benchmark.py [--size 512] [--steps N] [--encoder auto] [--device cpu|cuda] [--repeats 5]

The CLIPSeg timed here has the REAL configuration of CIDAS/clipseg-rd64-refined (ViT-B/16 vision tower, 12-layer
512-wide text tower, reduce_dim 64, the refined head; 150.7 M parameters, as recorded in tests/data/hf_repos.json)
with random weights: the real weights cannot be downloaded here, and a tiny model would time a different amount of
work. Its tokenizer is a byte-level stand-in (a phrase is a few more tokens than with the real BPE vocabulary, which
the 77-token text tower hardly notices). Random weights mean a random mask, so the threshold is set to the median
score: half the photo is the region, as a region of a real photo might be. The overhead is the whole run with the
mask (loading the photo, the mask, the masked optimisation) over the same run without it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from measuring import median_seconds  # noqa: E402 - beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, help="Gram steps (default: the method's)")
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="masks timed (median)")
    args = parser.parse_args()
    os.environ["NSTDIFF_DEVICE"] = args.device
    import torch
    from PIL import Image
    from transformers import CLIPSegForImageSegmentation, ViTImageProcessor

    from nstdiff import ImageStyleRequest, stylize
    from nstdiff.commands.stylize import EXAMPLES
    from nstdiff.controls.words import phrase_scores, words_mask
    from nstdiff.imageio import resize_long_side
    from nstdiff.settings import reload_settings
    from tests.tiny_diffusion import _clip_tokenizer, _save_tokenizer
    from tests.tiny_segmentation import real_clipseg_config

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        CLIPSegForImageSegmentation(real_clipseg_config()).save_pretrained(folder)
        ViTImageProcessor(size={"height": 352, "width": 352}, image_mean=[0.485, 0.456, 0.406],
                          image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
        _save_tokenizer(_clip_tokenizer(), Path(folder))
        os.environ["NSTDIFF_SEGMENTATION_MODEL"] = folder
        settings = reload_settings()
        device = torch.device(args.device)
        photo = resize_long_side(Image.open(EXAMPLES / "photo.jpg").convert("RGB"), args.size)
        started = time.perf_counter()
        scores = phrase_scores(photo, ["the sky"], photo.size, settings, device)  # loads the model once
        print(f"model load + first mask: {time.perf_counter() - started:.2f} s")
        threshold = min(max(float(scores.median()), 0.01), 0.99)  # a valid threshold however saturated
        per_mask = median_seconds(lambda: words_mask(photo, ["the sky"], photo.size, threshold, 4.0, settings, device),
                           args.repeats)
        print(f"mask from words at {photo.width}x{photo.height}: {per_mask:.3f} s per mask "
              f"(median of {args.repeats}, device {args.device}, {torch.get_num_threads()} threads)")

        def stylization(**controls):
            return lambda: stylize(ImageStyleRequest(method="gram", content=EXAMPLES / "photo.jpg",
                                                     styles=[EXAMPLES / "painting.jpg"], size=args.size,
                                                     steps=args.steps, seed=0, encoder=args.encoder,
                                                     controls=controls))

        plain = median_seconds(stylization(), 1)
        masked = median_seconds(stylization(only=["the sky"], mask_threshold=threshold), 1)
        print(f"gram at {args.size} px (steps {args.steps or 'default'}, encoder {args.encoder}): {plain:.1f} s "
              f"plain, {masked:.1f} s with a mask from words: ratio {masked / plain:.3f} "
              f"(the mask alone: {per_mask / plain:.1%} of the plain run)")


if __name__ == "__main__":
    main()
