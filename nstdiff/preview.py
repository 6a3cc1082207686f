"""Live previews: a small PNG of the image a run is working on, cheap enough to make every half second.

The optimisation loop hands its pixels (`optimise_image`); the diffusion step callback hands its latents, decoded
by a fixed linear map from the four Stable Diffusion latent channels to RGB (no VAE pass: a blurry but faithful
picture of where the denoising is going). Front ends get PNG bytes in `ProgressEvent.preview`, so they never need
torch.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import torch

MAX_SIDE = 256  # previews are thumbnails: downscaled before they leave the core
# latent channel → RGB for Stable Diffusion 1.x/2.x VAEs (the widely used approximation of the decoder's mean colour)
SD_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


def preview_png(image: "torch.Tensor | Image.Image", max_side: int = MAX_SIDE) -> bytes:
    """A PNG of `image` (a (1, 3, H, W) or (3, H, W) tensor in [0, 1], or a PIL image), longest side ≤ `max_side`."""
    if not isinstance(image, Image.Image):
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            pixels = image.detach()
            pixels = pixels if pixels.dim() == 4 else pixels.unsqueeze(0)
            pixels = pixels[:1, :3].float()
            height, width = pixels.shape[-2:]
            scale = min(1.0, max_side / max(height, width))
            if scale < 1:
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                pixels = F.interpolate(pixels, size=size, mode="area")
            array = (pixels[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        image = Image.fromarray(array, "RGB")
    else:
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: it is shown once and dropped
    return buffer.getvalue()


def latent_preview(latents: "torch.Tensor") -> "torch.Tensor | None":
    """RGB in [0, 1] from Stable Diffusion latents (batch, 4, h, w), or None for latents of another shape (SD3's 16
    channels, a video's extra axis): no preview rather than a wrong one."""
    import torch

    if latents.dim() != 4 or latents.shape[1] != len(SD_LATENT_RGB):
        return None
    factors = torch.tensor(SD_LATENT_RGB, dtype=torch.float32, device=latents.device)
    rgb = torch.einsum("bchw,cr->brhw", latents[:1].float(), factors)
    return ((rgb + 1) / 2).clamp(0, 1)
