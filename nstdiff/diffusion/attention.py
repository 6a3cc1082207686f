"""Training-free style injection into a UNet's self-attention: the processors of StyleID and StyleAligned, the cache
of what the style reference's pass leaves in them, and installing them on named layers only, for one run.

Both methods replace the processor of some self-attention layers (`…attn1`) of the shared UNet; everything else keeps
its processor. Which timestep the UNet is at comes from a forward pre-hook on the UNet (processors are not told), so
features recorded while DDIM-inverting an image can be found again at the same timestep while denoising.

- StyleID (Chung et al., "Style Injection in Diffusion", CVPR 2024, §3.2): the content's denoising keeps its own
  queries but attends to the style's keys and values from the style's inversion at the same timestep; query
  preservation blends the content's inverted query back in, Q̃ = γ·Q_c + (1 − γ)·Q_cs, and a temperature τ > 1
  sharpens the attention, softmax(τ·Q̃Kₛᵀ/√d)·Vₛ (the official code scales the query by τ).
- StyleAligned (Hertz et al., "Style Aligned Image Generation via Shared Attention", CVPR 2024, §3): images of a batch
  share attention with the first one, the reference: each attends to its own keys and to the reference's, after AdaIN
  of its queries and keys toward the reference's statistics, Q̂ = AdaIN(Q, Q_r), K̂ = AdaIN(K, K_r). A scale τ on the
  reference's keys (the official `keys_scale`) strengthens the attention paid to it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

SELF_ATTENTION = "attn1.processor"


@dataclass
class InjectionState:
    """What the installed processors do now: `mode` is off (plain attention), "record-content", "record-style" or
    "inject"; `injected` holds the timesteps that get injection; `cache` maps (layer, timestep) to the recorded
    query/key/value tensors."""

    mode: str = "off"
    timestep: int | None = None
    injected: set[int] = field(default_factory=set)
    cache: dict[tuple[str, int], dict[str, torch.Tensor]] = field(default_factory=dict)

    def injecting(self) -> bool:
        return self.mode == "inject" and self.timestep in self.injected


RUN_ORDER = ("down_blocks.", "mid_block.", "up_blocks.")  # `attn_processors` lists the mid block last


def self_attention_layers(unet: Any, decoder_only: bool) -> list[str]:
    """The processor names of the UNet's self-attention layers (of its decoder, `up_blocks`, when `decoder_only`), in
    the order a denoising step runs them (down, mid, up): StyleID's (the official code's output blocks 6–11 of SD 1.5)
    are the last six of the decoder's nine."""
    names = [name for name in unet.attn_processors
             if name.endswith(SELF_ATTENTION) and (not decoder_only or name.startswith("up_blocks."))]
    return sorted(names, key=lambda name: next(i for i, part in enumerate(RUN_ORDER) if name.startswith(part)))


def token_adain(features: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN over the token axis (−2) of (…, tokens, channels): each channel's mean and deviation become the
    reference's."""
    mean, std = features.mean(-2, keepdim=True), (features.var(-2, keepdim=True) + eps).sqrt()
    ref_mean, ref_std = reference.mean(-2, keepdim=True), (reference.var(-2, keepdim=True) + eps).sqrt()
    return (features - mean) / std * ref_std + ref_mean


class SelfAttentionProcessor:
    """Self-attention as diffusers' `AttnProcessor2_0` computes it, with `attend` (q, k, v → output, all (batch,
    heads, tokens, head_dim)) for a subclass to change."""

    def __init__(self, layer: str, state: InjectionState) -> None:
        self.layer, self.state = layer, state

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if attention_mask is not None:  # (self-attention in the UNets here has none)
            mask = attn.prepare_attention_mask(attention_mask, hidden_states.shape[1], batch)
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask.view(batch, attn.heads, -1,
                                                                                        mask.shape[-1]))
        else:
            out = self.attend(query, key, value)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class StyleIDProcessor(SelfAttentionProcessor):
    """Records the content's queries or the style's keys and values while an image is inverted; injects them while
    the content is denoised (module docstring)."""

    def __init__(self, layer: str, state: InjectionState, gamma: float, temperature: float) -> None:
        super().__init__(layer, state)
        self.gamma, self.temperature = gamma, temperature

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        state, slot = self.state, (self.layer, self.state.timestep)
        if state.mode.startswith("record") and state.timestep in state.injected:  # only what injection will read
            kept = {"query": query} if state.mode == "record-content" else {"key": key, "value": value}
            state.cache.setdefault(slot, {}).update({role: x.detach() for role, x in kept.items()})
        elif state.injecting():
            stored = state.cache[slot]  # (batch 1: classifier-free guidance broadcasts it over both halves)
            query = self.gamma * stored["query"] + (1 - self.gamma) * query
            batch = query.shape[0]
            key, value = stored["key"].expand(batch, -1, -1, -1), stored["value"].expand(batch, -1, -1, -1)
            query = query * self.temperature
        return super().attend(query, key, value)


class SharedAttentionProcessor(SelfAttentionProcessor):
    """StyleAligned's shared attention over a batch laid out in groups of `group` images (one group per half of
    classifier-free guidance), the reference first in each group."""

    def __init__(self, layer: str, state: InjectionState, temperature: float, group: int = 2) -> None:
        super().__init__(layer, state)
        self.temperature, self.group = temperature, group

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if not self.state.injecting():
            return super().attend(query, key, value)
        shape = query.shape

        def grouped(x: torch.Tensor) -> torch.Tensor:  # (groups, group, heads, tokens, dim)
            return x.view(-1, self.group, *x.shape[1:])

        query, key, value = grouped(query), grouped(key), grouped(value)
        query = token_adain(query, query[:, :1])
        key = token_adain(key, key[:, :1])
        # the reference attends to itself as before (its keys twice change nothing); the others' view of it is scaled
        scale = torch.full((1, self.group, 1, 1, 1), self.temperature, dtype=key.dtype, device=key.device)
        scale[:, 0] = 1.0
        key = torch.cat([key, key[:, :1] * scale], dim=-2)
        value = torch.cat([value, value[:, :1].expand_as(value)], dim=-2)
        out = super().attend(query.reshape(shape), key.reshape(*shape[:2], -1, shape[-1]),
                             value.reshape(*shape[:2], -1, shape[-1]))
        return out


@contextmanager
def installed(unet: Any, processors: dict[str, SelfAttentionProcessor], state: InjectionState) -> Iterator[None]:
    """`processors` on their layers of `unet` for the block's duration, every other layer untouched; afterwards (also
    on cancellation or an error) each layer gets back the very processor object it had, and the cache is freed."""
    before = unet.attn_processors
    unknown = sorted(set(processors) - set(before))
    if unknown:
        raise ValueError(f"the UNet has no attention layers {unknown}")

    def note_timestep(module, args, kwargs):
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        state.timestep = round(float(timestep.flatten()[0] if torch.is_tensor(timestep) else timestep))

    hook = unet.register_forward_pre_hook(note_timestep, with_kwargs=True)
    try:
        unet.set_attn_processor({**before, **processors})  # (diffusers pops from the dict it is given: a copy)
        yield
    finally:
        unet.set_attn_processor(dict(before))
        hook.remove()
        state.cache.clear()
        state.mode = "off"
