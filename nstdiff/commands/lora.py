"""`nstdiff lora train | list | rename | delete | export | import`: style LoRAs, trained here or brought in."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nstdiff.commands.flags import add_config_flags, configured
from nstdiff.commands.jobs import train_until_ctrl_c
from nstdiff.executor import InProcessExecutor
from nstdiff.settings import get_settings
from nstdiff.training.lora_data import LoraTraining

if TYPE_CHECKING:
    from nstdiff.loras import LoraInfo


def add_command(commands: argparse._SubParsersAction) -> None:
    lora = commands.add_parser("lora", help="style LoRAs")
    actions = lora.add_subparsers(dest="lora_command", required=True)
    add_config_flags(actions.add_parser("train", help="train a style LoRA from a folder of images (an interrupted "
                                        "run resumes from its last checkpoint)"), LoraTraining)
    actions.add_parser("list", help="the LoRAs in your library")
    rename = actions.add_parser("rename", help="rename a LoRA")
    rename.add_argument("old")
    rename.add_argument("new")
    delete = actions.add_parser("delete", help="delete a LoRA and its samples")
    delete.add_argument("name")
    export = actions.add_parser("export", help="write a LoRA in kohya format (AUTOMATIC1111, ComfyUI)")
    export.add_argument("name")
    export.add_argument("output", type=Path, help="a .safetensors file")
    import_ = actions.add_parser("import", help="add a .safetensors LoRA (diffusers or kohya keys) to the library")
    import_.add_argument("file", type=Path)
    import_.add_argument("--name", required=True)
    import_.add_argument("--base", default=None, help="its base model family (default: the diffusion_family setting)")
    import_.add_argument("--trigger", help="the word that calls the style up in prompts")
    lora.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    executor = InProcessExecutor()
    if args.lora_command == "train":
        config = configured(LoraTraining, args)
        report = train_until_ctrl_c(config, args.quiet)
        resumed = f", resumed from step {report.start_step}" if report.start_step else ""
        last = f", last loss {report.losses[-1]:.4g}" if report.losses else ""
        print(f"wrote {report.weights} ({report.steps} steps{resumed}{last}); use it with the trigger "
              f"'{config.trigger_word}'")
    elif args.lora_command == "list":
        print(library_table(executor.loras(include_damaged=True)))
    elif args.lora_command == "rename":
        print(f"renamed to {executor.lora('rename', old=args.old, new=args.new).name}")
    elif args.lora_command == "delete":
        executor.lora("delete", name=args.name)
        print(f"deleted {args.name}")
    elif args.lora_command == "export":
        print(f"wrote {executor.lora('export', name=args.name, destination=args.output)}")
    else:
        info = executor.lora("import", file=args.file, name=args.name,
                             base=args.base or get_settings().diffusion_family, trigger=args.trigger)
        print(f"imported {info.name} ({info.file})")
    return 0


def library_table(infos: list[LoraInfo]) -> str:
    """One row per LoRA, damaged entries marked with the reason."""
    rows = [f"{'name':24} {'base':10} {'trigger':16} {'rank':>4} {'steps':>6}  created"]
    for info in infos:
        rows.append(f"{info.name:24} DAMAGED: {info.damaged}" if info.damaged else
                    f"{info.name:24} {info.base or '-':10} {info.trigger or '-':16} {info.rank or '-':>4} "
                    f"{info.steps or '-':>6}  {info.created or '-'}")
    if not infos:
        rows.append("(empty: `nstdiff lora train` or `nstdiff lora import`)")
    elif any(info.damaged for info in infos):
        rows.append("(a damaged entry cannot be used; `nstdiff lora delete NAME` removes it)")
    return "\n".join(rows)
