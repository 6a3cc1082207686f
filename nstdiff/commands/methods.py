"""`nstdiff methods`: the registered methods."""
from __future__ import annotations

import argparse

from nstdiff.executor import InProcessExecutor


def add_command(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("methods", help="list the registered methods").set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for method in InProcessExecutor().methods():
        print(f"{method.name:12} {method.modality:6} {method.description}")
    return 0
