"""`nstdiff library list | add | remove | match`: the style library, public-domain paintings and your own."""
from __future__ import annotations

import argparse
from pathlib import Path

from nstdiff.errors import InputError


def add_command(commands: argparse._SubParsersAction) -> None:
    library = commands.add_parser("library", help="the style library: public-domain paintings and your own")
    actions = library.add_subparsers(dest="library_command", required=True)
    actions.add_parser("list", help="every painting: id, title, artist, year, licence")
    add = actions.add_parser("add", help="add your own style image (checked, stored as a JPEG of at most 1024 px)")
    add.add_argument("image", type=Path)
    add.add_argument("--title", required=True, help="how the library names it; words typed as a style match it")
    add.add_argument("--artist", default="", help="who made it")
    add.add_argument("--year", default="")
    add.add_argument("--tags", default="", help="comma-separated words a style typed in words may match, e.g. "
                     "'ink, sepia, calm'")
    add.add_argument("--name", help="its id (default: from the title)")
    remove = actions.add_parser("remove", help="remove one of your own paintings")
    remove.add_argument("id")
    find = actions.add_parser("match", help="the paintings that words typed as a style match, best first, and why")
    find.add_argument("words")
    find.add_argument("-k", type=int, default=3, help="how many (default 3)")
    library.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nstdiff.library import add_painting, list_paintings, match, no_match_message, remove_painting

    if args.library_command == "list":
        paintings = list_paintings()
        print(f"{'id':62} {'year':14} title — artist · licence")
        for p in paintings:
            print(f"{p.id:62} {p.year:14} {p.title} — {p.artist or '?'} · {p.licence}")
        own = sum(not p.builtin for p in paintings)
        print(f"{len(paintings)} paintings ({own} your own); use one with `nstdiff stylize PHOTO --library ID -o OUT`")
    elif args.library_command == "add":
        painting = add_painting(args.image, args.title, args.artist, args.tags, args.year, args.name)
        print(f"added {painting.id}: {painting.label}")
    elif args.library_command == "remove":
        remove_painting(args.id)
        print(f"removed {args.id}")
    else:
        if args.k < 1:
            raise InputError("-k must be at least 1")
        found = match(args.words, k=args.k)
        if not found:
            raise InputError(no_match_message(args.words))
        for rank, m in enumerate(found, 1):
            print(f"{rank}. {m.painting.label} [{m.painting.id}] score {m.score:g}: {m.why}")
    return 0
