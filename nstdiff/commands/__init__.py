"""The `nstdiff` command line: one module per command group, each with `add_command(commands)` that adds its parser
and sets its handler, the same shape as the extensions' commands (registry.COMMANDS_GROUP). Handlers go through the
executor (runs, training, models, presets, LoRAs, fast style networks) and import what is heavy only when they run:
`nstdiff --help` does not import torch."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from nstdiff.commands import adain, fast, library, lora, methods, models, presets, serve, stylize
from nstdiff.commands.flags import CommandParser
from nstdiff.commands.jobs import apply_backend_flags
from nstdiff.errors import Cancelled, NstdiffError, format_validation_error
from nstdiff.registry import COMMANDS_GROUP, plugins

GROUPS = (stylize, serve, adain, lora, fast, methods, presets, models, library)  # in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nstdiff", description="Style transfer: classic, AdaIN and diffusion.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for group in GROUPS:
        group.add_command(commands)
    for add_command in plugins(COMMANDS_GROUP):  # the extensions' commands
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        apply_backend_flags(args)  # --backend / --ray-address, for the commands that take them
        return args.handler(args)
    except ValidationError as exc:
        print(f"error: {format_validation_error(exc)}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    except NstdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
