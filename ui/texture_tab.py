"""The Texture tab: a texture grown from style images (Gram synthesis with no photo), with live previews and Cancel."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from ui.forms import ENCODERS
from ui.image_form import form_request
from ui.progress import in_results

if TYPE_CHECKING:
    from ui.host import Host


def build_texture_tab(app: "Host") -> list:
    """The tab; returns its job event (its end adds a result to the history)."""

    def texture(styles, size, steps, seed, encoder, request: gr.Request, progress=gr.Progress()):
        job = form_request(method="gram", content=None, styles=styles, weights=None, size=size, steps=steps,
                               seed=seed, encoder=encoder, strength=1.0, preserve_color="none", style_scale=1.0)
        yield from app.live(job, request, progress)

    with gr.Tab("Texture", id="texture"):
        with gr.Row():
            with gr.Column():
                styles = gr.File(file_count="multiple", file_types=["image"], label="Style image(s)",
                                 elem_id="texture-styles")
                size = gr.Slider(label="Size (px)", step=16, minimum=64, maximum=app.settings.max_output_side,
                                 value=256, elem_id="texture-size")
                steps = gr.Number(label="Steps (0 = default)", value=0, precision=0, minimum=0, elem_id="texture-steps")
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1)
                encoder = gr.Dropdown(ENCODERS, value=app.settings.default_encoder, label="Encoder")
            with gr.Column(elem_classes="result-column"):
                with gr.Row():
                    run = gr.Button("Synthesise", variant="primary", elem_id="texture-run")
                    stop = gr.Button("Cancel", elem_id="texture-cancel")
                output = gr.Image(label="Texture", format="png", type="filepath", interactive=False,
                                  elem_id="texture-result")
                info = gr.Markdown(elem_id="texture-info")
                status = gr.Markdown()
    job = run.click(in_results(texture), [styles, size, steps, seed, encoder], [output, info], api_name="texture",
                    show_progress_on=[info], **app.gpu_queue)
    stop.click(app.cancel, None, status, queue=False, api_name=False)
    run.click(lambda: "", None, status, queue=False, api_name=False, show_progress="hidden")  # no stale "Cancelling"
    return [job]
