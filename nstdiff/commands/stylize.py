"""`nstdiff stylize | texture | example`: the image commands, whose method-option flags come from every image
method's options model."""
from __future__ import annotations

import argparse
from pathlib import Path

from nstdiff.commands.flags import add_options_flags, field_help
from nstdiff.commands.jobs import add_backend_flags, run_request
from nstdiff.errors import InputError
from nstdiff.schema import Controls, ImageStyleRequest, PreserveColor

EXAMPLES = Path(__file__).parents[1] / "examples"


def add_command(commands: argparse._SubParsersAction) -> None:
    stylize = commands.add_parser("stylize", help="restyle a content image")
    stylize.add_argument("content", type=Path, help="the photo to restyle")
    _common_image_flags(stylize)
    stylize.add_argument("--preserve-color", choices=[c.value for c in PreserveColor], default="none",
                         help=field_help(Controls, "preserve_color"))
    stylize.add_argument("--mask", type=Path, help="region mask: white = style 1, red = style 2 …, black = untouched")
    stylize.add_argument("--mask-colors", type=lambda t: [c.strip() for c in t.split(",")],
                         help="hex colour of each style's region, e.g. '#ffffff,#ff0000'")
    _word_mask_flags(stylize)
    stylize.defer(_add_method_options)
    stylize.set_defaults(handler=_stylize)

    texture = commands.add_parser("texture", help="a new image: a texture from a style image, or txt2img from --prompt")
    _common_image_flags(texture)
    texture.defer(_add_method_options)
    texture.set_defaults(handler=_texture)

    example = commands.add_parser("example", help="stylize the bundled photo with the bundled painting")
    example.add_argument("-o", "--output", type=Path, default=Path("example.png"))
    example.add_argument("--size", type=int, default=256)
    example.add_argument("--quiet", action="store_true")
    add_backend_flags(example)
    example.set_defaults(handler=_example)


def _region(text: str) -> tuple[list[str], Path]:
    phrases, sep, style = text.rpartition("=")
    if not sep or not phrases.strip() or not style.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not PHRASES=STYLE_IMAGE, e.g. 'sky=starry.jpg' or "
                                         "'sky,clouds=starry.jpg'")
    return [p.strip() for p in phrases.split(",")], Path(style.strip())


def _word_mask_flags(parser: argparse.ArgumentParser) -> None:
    words = parser.add_argument_group("masks from words (a segmentation model: `nstdiff models fetch clipseg`)")
    words.add_argument("--region", action="append", default=[], type=_region, metavar="PHRASES=STYLE",
                       help="paint what the phrases name with that style image, e.g. 'sky=starry.jpg' (repeat; the "
                       "rest of the photo stays untouched; the styles come from here, not --style)")
    words.add_argument("--only", action="append", default=[], metavar="PHRASE",
                       help="style only what the phrase names, e.g. 'the dog' (repeat for several)")
    words.add_argument("--except", dest="except_", action="append", default=[], metavar="PHRASE",
                       help="leave what the phrase names untouched, e.g. 'faces' (repeat for several)")
    words.add_argument("--mask-threshold", type=float, default=Controls.model_fields["mask_threshold"].default,
                       help=field_help(Controls, "mask_threshold"))
    words.add_argument("--mask-feather", type=float, default=Controls.model_fields["mask_feather"].default,
                       help=field_help(Controls, "mask_feather"))
    words.add_argument("--style-mask", action="append", default=[], metavar="IMAGE",
                       help="a mask on each style image in turn, white = take the style from here ('-' = all of "
                       "it): the photo's sky takes the style's sky (method gram)")


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    from nstdiff.registry import list_methods  # imports every method, and with them torch

    add_options_flags(parser, [m.options_model for m in list_methods() if m.capabilities.modality == "image"])


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
    parser.add_argument("--strength", type=float, help=field_help(Controls, "strength") + "; a preset suggests "
                        "its own")
    parser.add_argument("--style-scale", type=float, default=Controls.model_fields["style_scale"].default,
                        help=field_help(Controls, "style_scale"))
    parser.add_argument("-o", "--output", type=Path, required=True, help="output image: .png, .jpg or .webp")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_flags(parser)


def _image_request(args: argparse.Namespace, content: Path | None) -> ImageStyleRequest:
    weights = args.style_weights or [1.0] * len(args.style)
    if len(weights) != len(args.style):
        raise InputError(f"--style-weights has {len(weights)} values for {len(args.style)} styles; give one each")
    regions = getattr(args, "region", [])
    if regions and args.style:  # every style needs a region: one given by --style alone would have none
        raise InputError("with --region each style comes with its place (--region 'sky=style.jpg'); give the styles "
                         "through --region only, not also with --style")
    style_images = [*args.style, *(image for _, image in regions)]
    weights = [*weights, *[1.0] * len(regions)]
    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    if args.lora:
        options["loras"] = args.lora
    if args.library:
        options["library"] = args.library
    controls = {"style_scale": args.style_scale}
    if args.strength is not None:
        controls["strength"] = args.strength
    if content is not None:
        controls.update(preserve_color=args.preserve_color, mask=args.mask, mask_colors=args.mask_colors,
                        regions=[{"where": phrases, "style": len(args.style) + index}
                                 for index, (phrases, _) in enumerate(regions, start=1)],
                        only=args.only, except_=args.except_, mask_threshold=args.mask_threshold,
                        mask_feather=args.mask_feather)
        if args.style_mask:
            controls["style_masks"] = [None if mask == "-" else Path(mask) for mask in args.style_mask]
    return ImageStyleRequest(
        method=args.method,
        content=content,
        styles=[{"image": s, "weight": w} for s, w in zip(style_images, weights)],
        prompt=args.prompt,
        size=args.size,
        steps=args.steps,
        seed=args.seed,
        quality=args.quality,
        encoder=args.encoder,
        controls=controls,
        options=options,
    )


def _stylize(args: argparse.Namespace) -> int:
    return run_request(_image_request(args, args.content), args.output, args.quiet)


def _texture(args: argparse.Namespace) -> int:
    return run_request(_image_request(args, None), args.output, args.quiet)


def _example(args: argparse.Namespace) -> int:
    request = ImageStyleRequest(content=EXAMPLES / "photo.jpg", styles=[EXAMPLES / "painting.jpg"], size=args.size,
                                seed=0)
    return run_request(request, args.output, args.quiet)
