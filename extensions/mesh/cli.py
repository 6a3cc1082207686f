"""`nstdiff mesh MODEL --style IMAGE -o OUT.glb`: texture a 3D model in the style of an image."""
from __future__ import annotations

import argparse
from pathlib import Path

from extensions.mesh.schema import OUTPUT_SUFFIXES, MeshStyleRequest
from nstdiff.commands.jobs import add_backend_flags

FIELDS = MeshStyleRequest.model_fields


def add_command(subparsers) -> None:
    parser = subparsers.add_parser("mesh", help="texture a 3D model (GLB, OBJ, PLY, STL) in the style of an image")
    parser.add_argument("model", type=Path, help=FIELDS["model"].description)
    parser.add_argument("--style", type=Path, required=True, help=FIELDS["style"].description)
    for name in ("views", "view_size", "steps", "texture_size", "strength", "seed"):
        info = FIELDS[name]
        kind = float if name == "strength" else int
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=info.default,
                            help=f"{info.description} (default: {info.default})")
    parser.add_argument("--mode", choices=["field", "texture"], default=FIELDS["mode"].default,
                        help=FIELDS["mode"].description)
    parser.add_argument("--encoder", default="auto", help=FIELDS["encoder"].description)
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help=f"output file: {', '.join(OUTPUT_SUFFIXES)} (.obj also writes .mtl and .png beside it; "
                        ".zip holds all three)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nstdiff.commands.jobs import run_request

    request = MeshStyleRequest(
        model=args.model, style=args.style, mode=args.mode, views=args.views, view_size=args.view_size,
        steps=args.steps, texture_size=args.texture_size, strength=args.strength, seed=args.seed,
        encoder=args.encoder,
    )
    return run_request(request, args.output, args.quiet, OUTPUT_SUFFIXES)  # an .fbx output: refused up front
