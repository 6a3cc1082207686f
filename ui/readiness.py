"""Readiness at the top of the tabs that need a diffusion model (Text style, Style reference, My styles, and Image
style while chain is chosen): what is not on disk, its download size, a Fetch button with progress, and "needs a GPU
to be practical" where there is none; and a check the Run buttons call so they explain instead of failing (`nstdiff/diffusion/readiness.py`). No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from nstdiff.diffusion.readiness import Readiness, readiness, size_text
from nstdiff.errors import NstdiffError

if TYPE_CHECKING:
    from ui.host import Host


def state(app: "Host", feature: str, family: str | None) -> Readiness:
    return readiness(feature, family or app.settings.diffusion_family, app.settings)


def require(app: "Host", feature: str, family: str | None) -> None:
    """Raise the one-line explanation when `feature` cannot run with `family` here (a model not on disk)."""
    ready = state(app, feature, family)
    if not ready.ready:
        raise gr.Error(ready.message(), title="Model not downloaded")


def _views(ready: Readiness) -> tuple[dict, dict]:
    text = ready.banner()
    fetchable = bool(ready.missing) and ready.downloads and not ready.problem
    label = f"Fetch {' + '.join(p.name for p in ready.missing)} ({size_text(ready.download_mb)})" if fetchable else ""
    return gr.update(value=text, visible=bool(text)), gr.update(value=label or "Fetch", visible=fetchable)


@dataclass
class Banner:
    feature: str
    prefix: str
    text: gr.Markdown
    fetch: gr.Button

    def wire(self, app: "Host", tab: gr.Tab, family: gr.Dropdown) -> None:
        """Refresh when the tab opens or the family changes; Fetch downloads what is missing, with progress."""
        def refresh(name):
            return _views(state(app, self.feature, name))

        outputs = [self.text, self.fetch]
        tab.select(refresh, family, outputs, queue=False, api_name=f"{self.prefix}_readiness",
                   show_progress="hidden")
        family.change(refresh, family, outputs, queue=False, api_name=False, show_progress="hidden")
        self._wire_fetch(app, family, refresh)

    def wire_to_method(self, app: "Host", method: gr.Dropdown, name: str) -> None:
        """A banner for one method of a tab (Image style's chain): shown while that method is chosen."""
        def refresh(chosen):
            return _views(state(app, self.feature, None)) if chosen == name else (gr.update(visible=False),) * 2

        method.change(refresh, method, [self.text, self.fetch], queue=False, api_name=False, show_progress="hidden")
        self._wire_fetch(app, method, refresh)

    def _wire_fetch(self, app: "Host", trigger: gr.components.Component, refresh) -> None:
        def fetch(value, progress=gr.Progress()):
            family = value if value in app.executor.families() else None
            for part in state(app, self.feature, family).missing:
                try:
                    app.executor.fetch_model(part.name, message=lambda text: progress(0, desc=text))
                except NstdiffError as exc:
                    raise gr.Error(str(exc), title=f"Could not fetch {part.name}")
            return refresh(value)

        self.fetch.click(fetch, trigger, [self.text, self.fetch], api_name=f"{self.prefix}_fetch",
                         concurrency_id="fetch", concurrency_limit=1, show_progress_on=[self.text])


def banner(app: "Host", feature: str, prefix: str, shown: bool = True) -> Banner:
    """The banner's widgets, at the top of a tab (call it first inside the tab), as they stand now (hidden when not
    `shown`: a banner for one method, `Banner.wire_to_method`)."""
    text, button = _views(state(app, feature, None))
    if not shown:
        text, button = {**text, "visible": False}, {**button, "visible": False}
    with gr.Row():
        markdown = gr.Markdown(elem_id=f"{prefix}-readiness", **{k: v for k, v in text.items() if k != "__type__"})
        fetch = gr.Button(variant="secondary", size="sm", scale=0, elem_id=f"{prefix}-fetch",
                          **{k: v for k, v in button.items() if k != "__type__"})
    return Banner(feature, prefix, markdown, fetch)
