"""`nstdiff presets`: the style presets."""
from __future__ import annotations

import argparse

from nstdiff.executor import InProcessExecutor


def add_command(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("presets", help="list the style presets (built in and your presets_file)").set_defaults(
        handler=run)


def run(args: argparse.Namespace) -> int:
    for preset in InProcessExecutor().presets():
        print(f"{preset.name:22} {preset.strength:4.2f}  {preset.prompt}")
    return 0
