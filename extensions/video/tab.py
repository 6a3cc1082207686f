"""The app's Video tab: a clip and a style (image or prompt) in; the first stylized frame at once, then the whole
clip with progress in frames and the time left, playing in the page, with a download. Torch-free."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from pydantic import ValidationError

from extensions.video.schema import INPUT_SUFFIXES, METHOD_NAME, VideoStyleRequest
from nstdiff.errors import format_validation_error
from ui.files import uploaded
from ui.forms import bounds

if TYPE_CHECKING:
    from ui.host import Host

FIELDS = VideoStyleRequest.model_fields


def video_request(*, clip: str | None, style: str | None, image_method: str, prompt: str, consistency: float,
                  keyframe_every: int, size: int, fps: float | None, max_seconds: float | None,
                  strength: float | None, steps: int | None, seed: int | None, encoder: str) -> VideoStyleRequest:
    """Form values as a request: 0 (or blank) fps, seconds and steps mean the clip's or the method's own; blank
    strength the method's; a negative seed draws one here, so the first-frame preview and the clip share it."""
    if not clip:
        raise gr.Error("Upload a video clip first.", title="Check the inputs")
    try:
        return VideoStyleRequest(
            content=Path(uploaded(clip)), style=Path(uploaded(style)) if style else None, image_method=image_method,
            prompt=prompt or None, consistency=consistency, keyframe_every=int(keyframe_every or 0), size=int(size),
            fps=fps or None, max_seconds=max_seconds or None, strength=strength, steps=int(steps) if steps else None,
            seed=secrets.randbelow(2**32) if seed is None or seed < 0 else int(seed), encoder=encoder)
    except ValidationError as exc:
        raise gr.Error(format_validation_error(exc), title="Check the inputs") from None


def refill(parameters: dict[str, Any], files) -> list[Any]:
    """The form's values from a past video result (`files(path)`: the file to show; None: leave the files)."""
    p, keep = parameters, (files or (lambda path: gr.update()))
    return [keep(p.get("content")), keep(p.get("style")), p["image_method"], p.get("prompt") or "", p["consistency"],
            p["keyframe_every"], p["size"], p.get("fps") or 0, p.get("max_seconds") or 0, p.get("strength"),
            p.get("steps") or 0, p["seed"], p["encoder"]]


def build_tab(app: "Host") -> list[Any]:
    from ui.history_tools import download_name, offer_as
    from ui.host import describe
    from ui.progress import forget, in_results, previews_while_running

    image_methods = [m.name for m in app.executor.methods() if m.modality == "image"]

    def render(clip, style, image_method, prompt, consistency, keyframe_every, size, fps, max_seconds, strength,
               steps, seed, encoder, request: gr.Request, progress=gr.Progress()):
        job = video_request(clip=clip, style=style, image_method=image_method, prompt=prompt,
                            consistency=consistency, keyframe_every=keyframe_every, size=size, fps=fps,
                            max_seconds=max_seconds, strength=strength, steps=steps, seed=seed, encoder=encoder)
        # the page sees the first stylized frame as soon as it is made (the look can be judged before minutes of
        # frames), then a frame now and then, all from the one run
        live = previews_while_running(app, job, request, progress)
        while True:
            try:
                picture, text = next(live)
            except StopIteration as finished:
                entry, result, shown = finished.value
                break
            yield picture, None, text, None
        name = download_name(job, f"{METHOD_NAME}-{job.image_method}", result.suffix)  # walk-video-gram.mp4
        text = f"{result.summary()}\n\n{describe(result)}"
        yield result.preview(), str(entry.output), text, offer_as(entry.output, name)
        if shown is not None:
            forget(shown)

    with gr.Tab("Video", id="video"):
        with gr.Row():
            with gr.Column():
                # gr.File: a browser's video picker hides GIFs, and Gradio would not check the type on the server
                clip = gr.File(file_types=list(INPUT_SUFFIXES), label="Clip (MP4, WebM, MOV, MKV, GIF)",
                               elem_id="video-content", height=116)
                # gr.File, not gr.Image: our loader, not Gradio's, judges the upload and explains a bad one
                style = gr.File(file_types=["image"], label="Style image", elem_id="video-style", height=116)
                image_method = gr.Dropdown(image_methods, value=FIELDS["image_method"].default, label="Method",
                                           info=FIELDS["image_method"].description, elem_id="video-method")
                prompt = gr.Textbox(label="Prompt (diffusion methods)", elem_id="video-prompt")
                consistency = gr.Slider(label="Consistency", step=0.05,
                                        **bounds(VideoStyleRequest, "consistency"), elem_id="video-consistency")
                with gr.Accordion("Settings", open=False):
                    size = gr.Slider(16, min(app.settings.max_video_side, 4096), step=16, value=FIELDS["size"].default,
                                     label="Size (long side, px)", elem_id="video-size")
                    fps = gr.Number(label="Frame rate (0 = the clip's)", value=0, minimum=0, maximum=120)
                    max_seconds = gr.Number(label=f"Seconds to stylize (0 = all, at most "
                                            f"{app.settings.max_video_seconds:g})", value=0, minimum=0,
                                            maximum=app.settings.max_video_seconds)
                    keyframe_every = gr.Number(label="Diffusion keyframe every N frames (0 = only at cuts)", value=0,
                                               precision=0, minimum=0)
                    strength = gr.Number(label="Strength (blank = the method's)", value=None, minimum=0, maximum=1)
                    steps = gr.Number(label="Steps per frame (0 = the method's)", value=0, precision=0, minimum=0,
                                      maximum=10_000, elem_id="video-steps")
                    seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1)
                    encoder = gr.Dropdown(["auto", "vgg19", "vgg16", "random"], value=app.settings.default_encoder,
                                          label="Encoder (Gram)")
            with gr.Column(elem_classes="result-column"):  # stays in view while the inputs scroll
                with gr.Row():
                    run = gr.Button("Stylize clip", variant="primary", elem_id="video-run", scale=2)
                    stop = gr.Button("Cancel", elem_id="video-cancel", scale=1)
                first = gr.Image(label="Stylized frame (the first, then as it goes)", format="png",
                                 interactive=False, height=200, elem_id="video-first-frame")
                result = gr.Video(label="Result", interactive=False, elem_id="video-result")
                info = gr.Markdown(elem_id="video-info")
                download = gr.File(label="Download", interactive=False, elem_id="video-download")
                status = gr.Markdown()
        form = [clip, style, image_method, prompt, consistency, keyframe_every, size, fps, max_seconds, strength, steps,
                seed, encoder]
        job = run.click(in_results(render, text_at=2, width=4), form, [first, result, info, download],
                        api_name="video", show_progress_on=[result], **app.gpu_queue)
        stop.click(app.cancel, None, status, queue=False, api_name=False)
        run.click(lambda: "", None, status, queue=False, api_name=False, show_progress="hidden")
        app.refills.add("Video", lambda method: method == METHOD_NAME, form, refill)
    return [job]
