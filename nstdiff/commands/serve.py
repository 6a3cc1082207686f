"""`nstdiff serve`: the web app."""
from __future__ import annotations

import argparse

from nstdiff.commands.jobs import add_backend_flags


def add_command(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", help="address to bind (default: settings, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: settings, 7860)")
    serve.add_argument("--auth", type=_auth, help="USER:PASS required to use the app")
    add_backend_flags(serve)
    serve.set_defaults(handler=run)


def _auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("--auth takes USER:PASS")
    return user, password


def run(args: argparse.Namespace) -> int:
    from ui.server import serve  # the app builds its own executor, for the settings' backend (--backend)

    serve(args.host, args.port, args.auth)
    return 0
