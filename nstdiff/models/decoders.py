"""AdaIN decoders (Huang & Belongie 2017, §6.1): the mirror of a VGG encoder up to relu4_1.

Reflection-padded 3×3 convolutions with ReLU and nearest-neighbour upsampling in place of the encoder's pooling, so
the decoder adds no checkerboard artefacts. A decoder is trained for one encoder (`nstdiff adain train`) and saved as
safetensors whose metadata names that encoder; `find_decoder` looks them up in `<models_dir>/adain/`.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from nstdiff.errors import ModelFileError, ModelNotFoundError
from nstdiff.models.encoders import WIDTHS
from nstdiff.models.weights import load_safetensors
from nstdiff.settings import Settings, get_settings

DECODER_FOLDER = "adain"
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


def decoder_path(encoder: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.models_path / DECODER_FOLDER / f"{encoder}.safetensors"


def load_decoder(encoder: str, width_divisor: int, explicit: Path | None = None,
                 settings: Settings | None = None) -> tuple[AdaINDecoder, Path]:
    """The decoder trained for `encoder` (or the file `explicit`); checks that it was trained for that encoder."""
    path = Path(explicit) if explicit else decoder_path(encoder, settings)
    if not path.is_file():
        raise ModelNotFoundError(
            f"adain decoder for {encoder}", [path],
            f"train one with `nstdiff adain train --content DIR --style DIR --encoder {encoder}`, or use "
            "variant='optimise', which needs no decoder",
        )
    decoder = AdaINDecoder(width_divisor)
    metadata = load_safetensors(decoder, path, "AdaIN decoder")
    if metadata.get("encoder", encoder) != encoder:
        raise ModelFileError(f"'{path}' is a decoder for encoder '{metadata['encoder']}', not '{encoder}'")
    return decoder.requires_grad_(False).eval(), path
