"""`nstdiff adain train`: an AdaIN decoder for an encoder."""
from __future__ import annotations

import argparse
from pathlib import Path

from nstdiff.commands.flags import flag
from nstdiff.commands.jobs import progress_printer
from nstdiff.distributed import build_executor

# the config's fields with a flag of their own (--content and --style name its two folders)
FLAGS = ("encoder", "steps", "batch", "size", "learning_rate", "style_weight", "checkpoint_every", "seed", "output")


def add_command(commands: argparse._SubParsersAction) -> None:
    adain = commands.add_parser("adain", help="AdaIN decoders").add_subparsers(dest="adain_command", required=True)
    train = adain.add_parser("train", help="train a decoder for an encoder (resumes from its last checkpoint)")
    train.add_argument("--content", type=Path, required=True, help="folder of content photos")
    train.add_argument("--style", type=Path, required=True, help="folder of style images")
    train.defer(_config_flags)
    train.set_defaults(handler=run)


def _config_flags(parser: argparse.ArgumentParser) -> None:
    from nstdiff.training.adain_decoder import DecoderTraining  # its module imports torch

    for name in FLAGS:
        info = DecoderTraining.model_fields[name]
        kind = Path if name == "output" else type(info.default)
        parser.add_argument(flag(name), type=kind, default=info.default, help=f"{info.description or ''} "
                            f"(default: {info.default})")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from nstdiff.training.adain_decoder import DecoderTraining

    config = DecoderTraining(content_dir=args.content, style_dir=args.style, **{
        name: getattr(args, name) for name in DecoderTraining.model_fields if hasattr(args, name)})
    on_progress, close = progress_printer(args.quiet)
    try:
        report = build_executor().train(config, progress=on_progress)
    finally:
        close()
    print(f"wrote {report.path} (steps {report.start_step + 1}–{report.steps}, last loss {report.losses[-1]:.4g})"
          if report.losses else f"{report.path} is already trained to step {report.steps}")
    return 0
