"""`nstdiff video CLIP --style IMAGE -o OUT.mp4 [--method feedforward|adain|gram|diffusion-text|…] [--prompt …]
[--fps] [--max-seconds] [--size] [--consistency 0..1] [--keyframe-every N]`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from extensions.video.schema import OUTPUT_SUFFIXES, VideoStyleRequest
from nstdiff.commands.jobs import add_backend_flags

FIELDS = VideoStyleRequest.model_fields
# flags beyond the positional clip, --style, --method, --options and -o: each one a request field, help from there
FLAGS = {"prompt": str, "size": int, "fps": float, "max_seconds": float, "frames": int, "consistency": float,
         "keyframe_every": int, "strength": float, "steps": int, "encoder": str, "seed": int}


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("video", help="stylize a video clip without flicker (MP4/WebM/MOV/MKV/GIF in)",
                                 description=VideoStyleRequest.__doc__)
    parser.add_argument("content", type=Path, help=FIELDS["content"].description)
    parser.add_argument("--style", type=Path, help=FIELDS["style"].description)
    parser.add_argument("--method", dest="image_method", default=FIELDS["image_method"].default,
                        help=FIELDS["image_method"].description)
    for name, kind in FLAGS.items():
        info = FIELDS[name]
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"{info.description} (default: {info.default})")
    parser.add_argument("--options", type=json.loads, default=None,
                        help='the image method\'s own options as JSON, e.g. \'{"optimizer": "adam"}\'')
    parser.add_argument("-o", "--output", type=Path, required=True, help="output file: .mp4 (H.264) or .webm (VP9)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nstdiff.commands.jobs import run_request

    values = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    request = VideoStyleRequest(content=args.content, style=args.style, image_method=args.image_method,
                                options=args.options or {}, **values)
    return run_request(request, args.output, args.quiet, OUTPUT_SUFFIXES)  # a .gif output: refused up front
