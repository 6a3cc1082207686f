"""The `nstdiff` command line. Flags are generated from the same typed models the API and the app use."""
from __future__ import annotations

import argparse
import signal
import sys
import types
import typing
from pathlib import Path
from typing import Any, Collection, Sequence

from pydantic import BaseModel, ValidationError

from nstdiff.errors import Cancelled, InputError, NstdiffError
from nstdiff.schema import Controls, ImageStyleRequest, PreserveColor
from nstdiff.training.adain_decoder import DecoderTraining
from nstdiff.training.fast_style_data import FastStyleTraining
from nstdiff.training.lora_data import LoraTraining

EXAMPLES = Path(__file__).parent / "examples"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_help(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    return f"{info.description or ''} (default: {info.default})".strip()


def _scalar_type(annotation: Any):
    """The argparse type (and choices) for a simple pydantic field annotation, or None if it has no flag."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _scalar_type(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if Path in inner:  # an image reference: a path on the command line
            return Path, None
        return _scalar_type(inner[0]) if len(inner) == 1 else None
    if origin is typing.Literal:
        return str, [str(a) for a in args]
    if origin is list and args and args[0] in (str, float, int):
        return (lambda text, t=args[0]: [t(x.strip()) for x in text.split(",") if x.strip()]), None
    if annotation is bool:
        return bool, None
    if annotation in (int, float, str):
        return annotation, None
    return None


def add_options_flags(parser: argparse.ArgumentParser, models: Sequence[type[BaseModel]]) -> list[str]:
    """Add a flag for every simple field of the methods' options models (lists as comma-separated values)."""
    group = parser.add_argument_group("method options")
    added: list[str] = []
    for model in models:
        for name, info in model.model_fields.items():
            kind = _scalar_type(info.annotation)
            if name in added or kind is None:
                continue
            convert, choices = kind
            where = f"[{model.__name__.removesuffix('Options').lower()}] {_field_help(model, name)}"
            if convert is bool:
                group.add_argument(_flag(name), dest=f"opt_{name}", action=argparse.BooleanOptionalAction,
                                   default=None, help=where)
            else:
                group.add_argument(_flag(name), dest=f"opt_{name}", type=convert, choices=choices, default=None,
                                   help=where)
            added.append(name)
    return added


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers like 0.7,0.3") from None


def _common_image_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", action="append", default=[], type=Path, help="style image (repeat for several)")
    parser.add_argument("--style-weights", type=_weights, help="blend weights, one per --style, e.g. 0.7,0.3")
    parser.add_argument("--prompt", help="a text style, e.g. 'ukiyo-e woodblock print' (diffusion methods; without "
                        "a diffusion model, auto matches it to the style library: `nstdiff library match WORDS`)")
    parser.add_argument("--library", metavar="ID", help="a painting of the style library as the style (method auto; "
                        "see `nstdiff library list`)")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                        help="a LoRA from your library with its blend weight (repeat to blend; diffusion methods)")
    parser.add_argument("--method", default="auto", help="method name (see `nstdiff methods`), or auto: a text style "
                        "goes to diffusion-text, a style image to diffusion-reference on a GPU with a ready model, "
                        "else by --quality; diffusion: the diffusion method for the inputs given")
    quality = ImageStyleRequest.model_fields["quality"]
    parser.add_argument("--quality", choices=["fast", "balanced", "best"], default=quality.default,
                        help=quality.description)
    parser.add_argument("--size", type=int, default=ImageStyleRequest.model_fields["size"].default,
                        help=ImageStyleRequest.model_fields["size"].description)
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the method's)")
    parser.add_argument("--seed", type=int, help="random seed (default: drawn and reported)")
    parser.add_argument("--encoder", default="auto", help="auto (settings' default_encoder, else best ready), vgg19, "
                        "vgg16, vgg19-normalised or random")
    parser.add_argument("--strength", type=float, help=_field_help(Controls, "strength") + "; a preset suggests "
                        "its own")
    parser.add_argument("--style-scale", type=float, default=Controls.model_fields["style_scale"].default,
                        help=_field_help(Controls, "style_scale"))
    parser.add_argument("-o", "--output", type=Path, required=True, help="output image: .png, .jpg or .webp")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from nstdiff.registry import COMMANDS_GROUP, list_methods, plugins

    option_models = [m.options_model for m in list_methods() if m.capabilities.modality == "image"]
    parser = argparse.ArgumentParser(prog="nstdiff", description="Style transfer: classic, AdaIN and diffusion.")
    commands = parser.add_subparsers(dest="command", required=True)

    stylize = commands.add_parser("stylize", help="restyle a content image")
    stylize.add_argument("content", type=Path, help="the photo to restyle")
    _common_image_flags(stylize)
    stylize.add_argument("--preserve-color", choices=[c.value for c in PreserveColor], default="none",
                         help=_field_help(Controls, "preserve_color"))
    stylize.add_argument("--mask", type=Path, help="region mask: white = style 1, red = style 2 …, black = untouched")
    stylize.add_argument("--mask-colors", type=lambda t: [c.strip() for c in t.split(",")],
                         help="hex colour of each style's region, e.g. '#ffffff,#ff0000'")
    add_options_flags(stylize, option_models)

    texture = commands.add_parser("texture", help="a new image: a texture from a style image, or txt2img from --prompt")
    _common_image_flags(texture)
    add_options_flags(texture, option_models)

    example = commands.add_parser("example", help="stylize the bundled photo with the bundled painting")
    example.add_argument("-o", "--output", type=Path, default=Path("example.png"))
    example.add_argument("--size", type=int, default=256)
    example.add_argument("--quiet", action="store_true")

    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", help="address to bind (default: settings, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: settings, 7860)")
    serve.add_argument("--auth", type=_auth, help="USER:PASS required to use the app")

    adain = commands.add_parser("adain", help="AdaIN decoders").add_subparsers(dest="adain_command", required=True)
    train = adain.add_parser("train", help="train a decoder for an encoder (resumes from its last checkpoint)")
    train.add_argument("--content", type=Path, required=True, help="folder of content photos")
    train.add_argument("--style", type=Path, required=True, help="folder of style images")
    for name in ("encoder", "steps", "batch", "size", "learning_rate", "style_weight", "checkpoint_every", "seed",
                 "output"):
        info = DecoderTraining.model_fields[name]
        kind = Path if name == "output" else type(info.default)
        train.add_argument(_flag(name), type=kind, default=info.default, help=f"{info.description or ''} "
                           f"(default: {info.default})")
    train.add_argument("--quiet", action="store_true")

    # ---- lora (training; the library commands join this group) ----
    lora = commands.add_parser("lora", help="style LoRAs").add_subparsers(dest="lora_command", required=True)
    _config_flags(lora.add_parser("train", help="train a style LoRA from a folder of images (an interrupted run "
                                  "resumes from its last checkpoint)"), LoraTraining)
    lora.add_parser("list", help="the LoRAs in your library")
    rename = lora.add_parser("rename", help="rename a LoRA")
    rename.add_argument("old")
    rename.add_argument("new")
    delete = lora.add_parser("delete", help="delete a LoRA and its samples")
    delete.add_argument("name")
    export = lora.add_parser("export", help="write a LoRA in kohya format (AUTOMATIC1111, ComfyUI)")
    export.add_argument("name")
    export.add_argument("output", type=Path, help="a .safetensors file")
    import_ = lora.add_parser("import", help="add a .safetensors LoRA (diffusers or kohya keys) to the library")
    import_.add_argument("file", type=Path)
    import_.add_argument("--name", required=True)
    import_.add_argument("--base", default=None, help="its base model family (default: the diffusion_family setting)")
    import_.add_argument("--trigger", help="the word that calls the style up in prompts")
    # ---- end lora ----

    fast = commands.add_parser("fast", help="your own fast style networks (Johnson et al. 2016)").add_subparsers(
        dest="fast_command", required=True)
    _config_flags(fast.add_parser("train", help="train a network for one painting on a folder of photos (an "
                                  "interrupted run resumes from its last checkpoint)"), FastStyleTraining)
    fast.add_parser("list", help="the networks in your library (use one with --method fast-style --network NAME)")
    fast.add_parser("delete", help="delete a network").add_argument("name")

    commands.add_parser("methods", help="list the registered methods")
    commands.add_parser("presets", help="list the style presets (built in and your presets_file)")
    models = commands.add_parser("models", help="list or fetch model weights")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    model_commands.add_parser("list", help="each model, where it is and whether it is ready")
    fetch = model_commands.add_parser("fetch", help="download (or import) a model, checked and converted")
    fetch.add_argument("name")
    fetch.add_argument("--from", dest="source", type=Path, help="import from a local file instead of downloading")
    from nstdiff.library.cli import add_command as add_library_command

    add_library_command(commands)
    for add_command in plugins(COMMANDS_GROUP):
        add_command(commands)
    return parser


def _config_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """A flag for every field of a training config (`--learning-rate` also as `--lr`), and --quiet."""
    for name, info in model.model_fields.items():
        convert, choices = (Path, None) if info.annotation is Path else _scalar_type(info.annotation)
        flags = [_flag(name), "--lr"] if name == "learning_rate" else [_flag(name)]
        text = info.description if info.is_required() or info.default is None else _field_help(model, name)
        if convert is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(*flags, dest=name, type=convert, choices=choices, required=info.is_required(),
                                default=None, help=text)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("--auth takes USER:PASS")
    return user, password


def _progress_printer(quiet: bool):
    """A tqdm bar fed by ProgressEvents; status messages are printed above it."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def on_progress(event) -> None:
        if event.stage == "message":
            (state["bar"].write if "bar" in state else print)(event.message, file=sys.stderr)
            return
        if quiet:
            return
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=event.total, unit="step", file=sys.stderr, dynamic_ncols=True)
        bar.update(event.step - bar.n)
        if event.losses:
            bar.set_postfix({k: f"{v:.3g}" for k, v in event.losses.items()}, refresh=False)

    def close() -> None:
        if "bar" in state:
            state.pop("bar").close()

    return on_progress, close


def _image_request(args: argparse.Namespace, content: Path | None) -> ImageStyleRequest:
    weights = args.style_weights or [1.0] * len(args.style)
    if len(weights) != len(args.style):
        raise InputError(f"--style-weights has {len(weights)} values for {len(args.style)} styles; give one each")
    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    if args.lora:
        options["loras"] = args.lora
    if args.library:
        options["library"] = args.library
    controls = {"style_scale": args.style_scale}
    if args.strength is not None:
        controls["strength"] = args.strength
    if content is not None:
        controls.update(preserve_color=args.preserve_color, mask=args.mask, mask_colors=args.mask_colors)
    return ImageStyleRequest(
        method=args.method,
        content=content,
        styles=[{"image": s, "weight": w} for s, w in zip(args.style, weights)],
        prompt=args.prompt,
        size=args.size,
        steps=args.steps,
        seed=args.seed,
        quality=args.quality,
        encoder=args.encoder,
        controls=controls,
        options=options,
    )


def run_request(request: BaseModel, output: Path, quiet: bool, suffixes: Collection[str] | None = None) -> int:
    """Run any method's request with a progress bar and Ctrl-C cancellation, and save its result to `output`, whose
    suffix must be one of `suffixes` (default: the image formats)."""
    from nstdiff.executor import CancelToken, stylize
    from nstdiff.imageio import IMAGE_FORMATS, check_writable

    check_writable(output, suffixes or IMAGE_FORMATS)  # fail before minutes of work, not after
    cancel = CancelToken()

    def on_interrupt(signum, frame):
        cancel.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    previous = signal.signal(signal.SIGINT, on_interrupt)
    on_progress, close = _progress_printer(quiet)
    try:
        result = stylize(request, progress=on_progress, cancel=cancel)
    finally:
        close()
        signal.signal(signal.SIGINT, previous)
    written = result.save(output)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {written} ({result.describe()})")
    return 0


def _train_adain(args: argparse.Namespace) -> int:
    from nstdiff.training.adain_decoder import train_decoder

    config = DecoderTraining(content_dir=args.content, style_dir=args.style, **{
        name: getattr(args, name) for name in DecoderTraining.model_fields if hasattr(args, name)})
    on_progress, close = _progress_printer(args.quiet)
    try:
        report = train_decoder(config, progress=on_progress)
    finally:
        close()
    print(f"wrote {report.path} (steps {report.start_step + 1}–{report.steps}, last loss {report.losses[-1]:.4g})"
          if report.losses else f"{report.path} is already trained to step {report.steps}")
    return 0


def _train_until_ctrl_c(train, config: BaseModel, quiet: bool):
    """`train(config, progress=…, cancel=…)` with a progress bar; Ctrl-C stops it after the current step."""
    from nstdiff.executor import CancelToken

    cancel = CancelToken()

    def on_interrupt(signum, frame):
        cancel.cancel()  # stops after the current step; the checkpoints are kept
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    on_progress, close = _progress_printer(quiet)
    try:
        return train(config, progress=on_progress, cancel=cancel)
    finally:
        close()
        signal.signal(signal.SIGINT, previous)


def _configured(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    return model(**{name: getattr(args, name) for name in model.model_fields if getattr(args, name) is not None})


def _train_lora(args: argparse.Namespace) -> int:
    from nstdiff.training.lora import train_lora

    config = _configured(LoraTraining, args)
    report = _train_until_ctrl_c(train_lora, config, args.quiet)
    resumed = f", resumed from step {report.start_step}" if report.start_step else ""
    last = f", last loss {report.losses[-1]:.4g}" if report.losses else ""
    print(f"wrote {report.weights} ({report.steps} steps{resumed}{last}); use it with the trigger "
          f"'{config.trigger_word}'")
    return 0


def _fast(args: argparse.Namespace) -> int:
    from nstdiff.training import fast_style_data

    if args.fast_command == "list":
        print(fast_style_data.library_table())
    elif args.fast_command == "delete":
        fast_style_data.delete_network(args.name)
        print(f"deleted {args.name}")
    else:
        from nstdiff.training.fast_style import train_fast_style

        report = _train_until_ctrl_c(train_fast_style, _configured(FastStyleTraining, args), args.quiet)
        resumed = f", resumed from step {report.start_step}" if report.start_step else ""
        print(f"wrote {report.network} ({report.steps} steps{resumed}, style loss {report.meta['style_loss']:.4g}); "
              f"use it with --method fast-style --network {args.name}")
    return 0


def _lora_library(args: argparse.Namespace) -> int:
    from nstdiff import kohya, loras
    from nstdiff.settings import get_settings

    if args.lora_command == "list":
        print(loras.library_table())
    elif args.lora_command == "rename":
        print(f"renamed to {loras.rename_lora(args.old, args.new).name}")
    elif args.lora_command == "delete":
        loras.delete_lora(args.name)
        print(f"deleted {args.name}")
    elif args.lora_command == "export":
        print(f"wrote {kohya.export_kohya(args.name, args.output)}")
    else:
        info = loras.import_lora(args.file, args.name, args.base or get_settings().diffusion_family, args.trigger)
        print(f"imported {info.name} ({info.file})")
    return 0


def _models(args: argparse.Namespace) -> int:
    from nstdiff.models import fetch_model, list_models

    if args.models_command == "list":
        rows = list_models()
        print(f"{'name':28} {'ready':6} {'path':60} description")
        for row in rows:
            print(f"{row.name:28} {'yes' if row.ready else 'no':6} {str(row.path):60} {row.description}")
        print(f"{'random':28} {'yes':6} {'(built in, for tests)':60}")
        return 0
    fetch_model(args.name, source=args.source, message=lambda m: print(m, file=sys.stderr))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "stylize":
            return run_request(_image_request(args, args.content), args.output, args.quiet)
        if args.command == "texture":
            return run_request(_image_request(args, None), args.output, args.quiet)
        if args.command == "example":
            request = ImageStyleRequest(
                content=EXAMPLES / "photo.jpg", styles=[EXAMPLES / "painting.jpg"], size=args.size, seed=0
            )
            return run_request(request, args.output, args.quiet)
        if args.command == "serve":
            from ui.server import serve

            serve(args.host, args.port, args.auth)
            return 0
        if args.command == "adain":
            return _train_adain(args)
        if args.command == "lora":
            return _train_lora(args) if args.lora_command == "train" else _lora_library(args)
        if args.command == "fast":
            return _fast(args)
        if args.command == "methods":
            from nstdiff.registry import list_methods

            for method in list_methods():
                print(f"{method.name:12} {method.capabilities.modality:6} {method.description}")
            return 0
        if args.command == "models":
            return _models(args)
        if args.command == "presets":
            from nstdiff.diffusion.presets import load_presets

            for preset in load_presets().values():
                print(f"{preset.name:22} {preset.strength:4.2f}  {preset.prompt}")
            return 0
        if hasattr(args, "handler"):  # an extension's command
            return args.handler(args)
    except ValidationError as exc:
        from nstdiff.errors import format_validation_error

        print(f"error: {format_validation_error(exc)}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    except NstdiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 2


if __name__ == "__main__":
    sys.exit(main())
