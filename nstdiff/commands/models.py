"""`nstdiff models list | fetch`: model weights, where they are and whether they are ready."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nstdiff.executor import InProcessExecutor


def add_command(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list or fetch model weights")
    actions = models.add_subparsers(dest="models_command", required=True)
    actions.add_parser("list", help="each model, where it is and whether it is ready")
    fetch = actions.add_parser("fetch", help="download (or import) a model, checked and converted")
    fetch.add_argument("name")
    fetch.add_argument("--from", dest="source", type=Path, help="import from a local file instead of downloading")
    models.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    executor = InProcessExecutor()
    if args.models_command == "list":
        rows = executor.models()
        print(f"{'name':28} {'ready':6} {'path':60} description")
        for row in rows:
            print(f"{row.name:28} {'yes' if row.ready else 'no':6} {str(row.path):60} {row.description}")
        print(f"{'random':28} {'yes':6} {'(built in, for tests)':60}")
        return 0
    executor.fetch_model(args.name, message=lambda m: print(m, file=sys.stderr), source=args.source)
    return 0
