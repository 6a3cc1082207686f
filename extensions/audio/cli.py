"""`nstdiff audio CONTENT --style STYLE [--strength] [--steps] [--seconds] -o OUT.wav`."""
from __future__ import annotations

import argparse
from pathlib import Path

from extensions.audio.schema import OUTPUT_SUFFIXES, AudioStyleRequest
from nstdiff.commands.jobs import add_backend_flags

# flags beyond the positional content, --style and -o: each one a request field, with its bounds and help from there
FIELDS = ("strength", "steps", "seconds", "mode", "filters", "kernel_width", "n_fft", "sample_rate", "seed")


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("audio", help="render a sound clip in the texture of another (WAV/FLAC/OGG/MP3 in)",
                                 description=AudioStyleRequest.__doc__)
    parser.add_argument("content", type=Path, help=AudioStyleRequest.model_fields["content"].description)
    parser.add_argument("--style", type=Path, required=True, help=AudioStyleRequest.model_fields["style"].description)
    for name in FIELDS:
        info = AudioStyleRequest.model_fields[name]
        kind = {"seconds": float, "seed": int, "mode": str}.get(name, type(info.default))
        choices = ["waveform", "spectrogram"] if name == "mode" else None
        parser.add_argument("--" + name.replace("_", "-"), type=kind, choices=choices, default=None,
                            help=f"{info.description} (default: {info.default})")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file: .wav or .flac")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nstdiff.commands.jobs import run_request

    values = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    request = AudioStyleRequest(content=args.content, style=args.style, **values)
    return run_request(request, args.output, args.quiet, OUTPUT_SUFFIXES)  # a .mp3 output: refused up front
