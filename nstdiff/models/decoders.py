"""AdaIN decoders (Huang & Belongie 2017, §6.1): the mirror of a VGG encoder up to relu4_1.

Reflection-padded 3×3 convolutions with ReLU and nearest-neighbour upsampling in place of the encoder's pooling, so
the decoder adds no checkerboard artefacts. A decoder is trained for one encoder (`nstdiff adain train`) and saved as
safetensors whose metadata names that encoder, in `<models_dir>/adain/<encoder>.safetensors`.

The decoder published with the paper's code (`decoder.pth`, for the normalised VGG19) has exactly this layout; it is
a registered model (`adain-vgg19-normalised`), fetched, checked by sha256 and converted like the encoders.

AdaIN's `auto` variant uses a decoder only when it is on disk, or is the paper's one and its fetch succeeds now;
otherwise the method optimises, and its notes say why.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from safetensors import SafetensorError, safe_open
from torch import nn

from nstdiff.errors import ModelFileError, ModelNotFoundError
from nstdiff.models.encoders import ADAIN_RELEASE, load_pinned_checkpoint, sequential_convs
from nstdiff.models.resolver import (Message, ModelEntry, ModelStatus, model_status, register_listing, register_model,
                                    resolve_model)
from nstdiff.models.vgg import WIDTHS
from nstdiff.models.weights import load_safetensors, load_tensors, save_safetensors
from nstdiff.settings import Settings, get_settings

DECODER_FOLDER = "adain"
CHECKPOINT_SUFFIX = ".checkpoint.safetensors"  # training's resumable state, next to the decoder it becomes
_CACHE: dict[tuple[str, int, int], tuple["AdaINDecoder", str]] = {}  # (file, mtime, width) → (decoder, its encoder)
_CACHE_LOCK = threading.Lock()
# (name, in, out) from relu4_1 back to RGB; "up" doubles the size. Widths mirror VGG's blocks 4 → 1.
PLAN = (("conv4_1", 3, 2), ("up", 0, 0), ("conv3_4", 2, 2), ("conv3_3", 2, 2), ("conv3_2", 2, 2), ("conv3_1", 2, 1),
        ("up", 0, 0), ("conv2_2", 1, 1), ("conv2_1", 1, 0), ("up", 0, 0), ("conv1_2", 0, 0), ("conv1_1", 0, -1))


class AdaINDecoder(nn.Module):
    def __init__(self, width_divisor: int = 1):
        super().__init__()
        self.width_divisor = width_divisor
        widths = [w // width_divisor for w in WIDTHS]
        layers: list[nn.Module] = []
        for name, source, target in PLAN:
            if name == "up":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                continue
            out_channels = 3 if target < 0 else widths[target]
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(widths[source], out_channels, 3)]
            if target >= 0:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, features):
        return self.net(features)


PUBLIC_DECODER_URL = f"{ADAIN_RELEASE}/decoder.pth"
# Pinned as recorded from the release by another project (unreachable from our build machines, so not re-measured).
PUBLIC_DECODER_SHA256 = "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472"
PUBLIC_DECODERS = {"vgg19-normalised": "adain-vgg19-normalised"}  # encoder → registered decoder model


def fetch_public_decoder(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
    decoder = AdaINDecoder()
    if source is not None and Path(source).suffix == ".safetensors":
        load_safetensors(decoder, Path(source), "AdaIN decoder")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            state = load_pinned_checkpoint(source, PUBLIC_DECODER_URL, PUBLIC_DECODER_SHA256, "AdaIN decoder",
                                           Path(tmp), message)
        ours = [name.removesuffix(".weight") for name in decoder.state_dict() if name.endswith(".weight")]
        pairs = sequential_convs(state)
        if len(pairs) != len(ours):
            raise ModelFileError(f"the AdaIN decoder checkpoint has {len(pairs)} convolutions, expected {len(ours)}")
        tensors = {}
        for name, (weight, bias) in zip(ours, pairs):
            tensors[f"{name}.weight"], tensors[f"{name}.bias"] = weight, bias
        load_tensors(decoder, tensors, "the AdaIN decoder checkpoint", "AdaIN decoder")
    save_safetensors(decoder, destination, {"encoder": "vgg19-normalised", "source": PUBLIC_DECODER_URL})


register_model(
    ModelEntry("adain-vgg19-normalised", "decoder", "the AdaIN paper's decoder (needs encoder vgg19-normalised)",
               "vgg19-normalised.safetensors", fetch_public_decoder, source=PUBLIC_DECODER_URL, size_mb=14,
               folder=DECODER_FOLDER)
)


def decoder_path(encoder: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.models_path / DECODER_FOLDER / f"{encoder}.safetensors"


def decoder_on_disk(encoder: str, settings: Settings | None = None) -> bool:
    """A decoder for `encoder` (trained, or the paper's already fetched) is in the models folder."""
    return decoder_path(encoder, settings).is_file()


def choose_decoder(variant: str, explicit: Path | None, encoder: str, width_divisor: int, settings: Settings,
                   message: Message | None = None) -> tuple[AdaINDecoder, Path] | str:
    """The decoder an AdaIN run in `variant` uses, or why it optimises instead. `decoder` (or an explicit file) must
    load; `auto` falls back when no decoder is on disk and the paper's one cannot be fetched now (offline, say)."""
    if variant == "optimise":
        return "as asked"
    if variant == "auto" and explicit is None and not decoder_on_disk(encoder, settings):
        if encoder not in PUBLIC_DECODERS:
            return f"no decoder for {encoder} on disk; `nstdiff adain train` makes one"
        try:
            resolve_model(PUBLIC_DECODERS[encoder], settings=settings, message=message)
        except (ModelNotFoundError, ModelFileError) as exc:
            return f"the paper's decoder could not be had: {exc}"
    return load_decoder(encoder, width_divisor, explicit, settings, message)


def public_decoder_ready(settings: Settings | None = None) -> str | None:
    """The encoder whose public decoder and weights are both on disk (AdaIN's `auto` prefers it), if any."""
    for encoder, decoder in PUBLIC_DECODERS.items():
        if model_status(encoder, settings).ready and model_status(decoder, settings).ready:
            return encoder
    return None


def load_decoder(encoder: str, width_divisor: int, explicit: Path | None = None, settings: Settings | None = None,
                 message: Message | None = None) -> tuple[AdaINDecoder, Path]:
    """The decoder for `encoder` (or the file `explicit`): trained by us, or the public one fetched when allowed.
    Checks that it was made for that encoder."""
    settings = settings or get_settings()
    if explicit is None and encoder in PUBLIC_DECODERS:
        path = resolve_model(PUBLIC_DECODERS[encoder], settings=settings, message=message)
    else:
        path = Path(explicit) if explicit else decoder_path(encoder, settings)
    if not path.is_file():
        raise ModelNotFoundError(
            f"adain decoder for {encoder}", [path],
            f"train one with `nstdiff adain train --content DIR --style DIR --encoder {encoder}`, or use "
            "variant='optimise', which needs no decoder",
        )
    key = (str(path.resolve()), path.stat().st_mtime_ns, width_divisor)
    with _CACHE_LOCK:
        if key not in _CACHE:
            decoder = AdaINDecoder(width_divisor)
            metadata = load_safetensors(decoder, path, "AdaIN decoder")
            if len(_CACHE) >= 2:  # kept warm between requests, like the encoders
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = (decoder.requires_grad_(False).eval(), metadata.get("encoder", encoder))
        decoder, made_for = _CACHE[key]
    if made_for != encoder:
        raise ModelFileError(f"'{path}' is a decoder for encoder '{made_for}', not '{encoder}'")
    return decoder, path


def trained_decoders(settings: Settings) -> list[ModelStatus]:
    """Decoders made by `nstdiff adain train` in the models folder, and runs stopped before their decoder was written
    (their checkpoint, not ready), for `nstdiff models list`. The paper's decoder has its registered entry."""
    registered = {decoder_path(encoder, settings) for encoder in PUBLIC_DECODERS}
    rows = []
    for path in sorted((settings.models_path / DECODER_FOLDER).glob("*.safetensors")):
        stem = path.name.removesuffix(CHECKPOINT_SUFFIX).removesuffix(".safetensors")
        decoder = path.with_name(stem + ".safetensors")
        if path in registered or (path != decoder and decoder.is_file()):
            continue  # listed by its registered entry, or by the decoder this checkpoint became
        metadata = _metadata(path)
        if metadata is None:
            ready, about = False, "damaged file"
        elif path != decoder:
            ready, about = False, f"stopped at step {metadata.get('step', '?')}; `nstdiff adain train` resumes it"
        else:
            ready, about = True, (f"{metadata.get('steps', '?')} steps on {metadata.get('content_images', '?')} "
                                  f"content and {metadata.get('style_images', '?')} style images")
        encoder = (metadata or {}).get("encoder", stem)
        rows.append(ModelStatus(f"adain-{encoder}", "decoder", f"AdaIN decoder trained for encoder {encoder} ({about})",
                                ready, path, "nstdiff adain train", fetchable=False))
    return rows


def _metadata(path: Path) -> dict[str, str] | None:
    """The file's metadata (its header only is read), or None when it is damaged: listed as such, not fatal."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (OSError, SafetensorError):
        return None


register_listing(trained_decoders)
