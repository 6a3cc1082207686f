"""`nstdiff fast train | list | delete`: your own fast style networks (Johnson et al. 2016)."""
from __future__ import annotations

import argparse

from nstdiff.commands.flags import add_config_flags, configured
from nstdiff.commands.jobs import train_until_ctrl_c
from nstdiff.executor import InProcessExecutor
from nstdiff.training.fast_style_data import FastStyleInfo, FastStyleTraining


def add_command(commands: argparse._SubParsersAction) -> None:
    fast = commands.add_parser("fast", help="your own fast style networks (Johnson et al. 2016)")
    actions = fast.add_subparsers(dest="fast_command", required=True)
    add_config_flags(actions.add_parser("train", help="train a network for one painting on a folder of photos (an "
                                        "interrupted run resumes from its last checkpoint)"), FastStyleTraining)
    actions.add_parser("list", help="the networks in your library (use one with --method fast-style --network NAME)")
    actions.add_parser("delete", help="delete a network").add_argument("name")
    fast.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    executor = InProcessExecutor()
    if args.fast_command == "list":
        print(library_table(executor.networks()))
    elif args.fast_command == "delete":
        executor.network("delete", name=args.name)
        print(f"deleted {args.name}")
    else:
        report = train_until_ctrl_c(configured(FastStyleTraining, args), args.quiet)
        resumed = f", resumed from step {report.start_step}" if report.start_step else ""
        print(f"wrote {report.network} ({report.steps} steps{resumed}, style loss {report.meta['style_loss']:.4g}); "
              f"use it with --method fast-style --network {args.name}")
    return 0


def library_table(infos: list[FastStyleInfo]) -> str:
    """One row per network: its painting, training length and final losses."""
    rows = [f"{'name':24} {'painting':28} {'steps':>6} {'px':>5} {'style':>7} {'content':>7}  created"]
    for info in infos:
        losses = [f"{x:7.3g}" if x is not None else f"{'-':>7}" for x in (info.style_loss, info.content_loss)]
        rows.append(f"{info.name:24} {info.painting[:28]:28} {info.steps:>6} {info.resolution:>5} {' '.join(losses)}  "
                    f"{info.created}")
    if len(rows) == 1:
        rows.append("(empty: `nstdiff fast train --name NAME --style PAINTING --images PHOTOS`)")
    return "\n".join(rows)
