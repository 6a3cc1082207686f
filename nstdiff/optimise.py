"""Optimising an image directly (the classic methods): one loop, shared by every method that needs it."""
from __future__ import annotations

from typing import Callable, Literal

import torch

from nstdiff.context import RunContext
from nstdiff.errors import InputError

Objective = Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def optimise_image(
    image: torch.Tensor, objective: Objective, optimizer: Literal["lbfgs", "adam"], learning_rate: float, steps: int,
    context: RunContext, done: int = 0, total: int | None = None,
) -> tuple[int, dict[str, float]]:
    """Minimise `objective()` over the pixels of `image` (a leaf tensor) for `steps` steps.

    Reports every step through `context` (which also raises `Cancelled`), with a live preview of the pixels when one
    is due, and returns (steps done so far, the last loss terms). `done`/`total` let several calls (pyramid levels)
    share one progress bar; each call is a level of its own (`ProgressEvent.level`), for time-left estimates.
    """
    total = total or done + steps
    context.level += 1
    final: dict[str, float] = {}

    def closure():
        solver.zero_grad(set_to_none=True)
        loss, parts = objective()
        if not torch.isfinite(loss):
            raise InputError("the loss became non-finite; lower the style weight or learning rate, or use strength")
        loss.backward()
        final.clear()
        final.update({k: float(v.detach()) for k, v in parts.items()}, total=float(loss.detach()))
        return loss

    image.requires_grad_(True)
    if optimizer == "lbfgs":
        # max_iter=1 per call: one function evaluation a step, so progress and cancel come every step
        solver = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=50)
    else:
        solver = torch.optim.Adam([image], lr=learning_rate)
    for _ in range(steps):
        solver.step(closure)
        if optimizer == "adam":  # projected steps; L-BFGS is left unclamped: a clamp breaks its curvature pairs
            with torch.no_grad():
                image.clamp_(0, 1)
        done += 1
        context.step(done, total, final, preview=image if context.wants_preview() else None)
    return done, final
