"""The app's Audio tab: two clips in, the restyled clip out, spectrograms of all three side by side. Torch-free."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from pydantic import ValidationError

from extensions.audio.schema import MAX_SECONDS, AudioStyleRequest
from nstdiff.errors import NstdiffError, format_validation_error
from ui.files import uploaded
from ui.forms import bounds

if TYPE_CHECKING:
    from ui.host import Host

SAMPLE_RATES = [16000, 22050, 32000, 44100, 48000]
FFT_SIZES = [256, 512, 1024, 2048, 4096, 8192]


def audio_request(*, content: str | None, style: str | None, strength: float, mode: str, steps: int, filters: int,
                  kernel_width: int, n_fft: int, sample_rate: int, seconds: float | None, seed: int | None
                  ) -> AudioStyleRequest:
    """Form values as a request: 0 seconds means the whole clip, a negative seed means draw one."""
    if not content or not style:
        raise gr.Error("Upload a content clip and a style clip first.", title="Check the inputs")
    try:
        return AudioStyleRequest(
            content=Path(uploaded(content)), style=Path(uploaded(style)), strength=strength, mode=mode, steps=int(steps),
            filters=int(filters), kernel_width=int(kernel_width), n_fft=int(n_fft), sample_rate=int(sample_rate),
            seconds=float(seconds) if seconds else None, seed=None if seed is None or seed < 0 else int(seed))
    except ValidationError as exc:
        raise gr.Error(format_validation_error(exc), title="Check the inputs") from None


def refill(parameters: dict[str, Any], files) -> list[Any]:
    """The form's values from a past audio result (`files(path)`: the clip to show; None: leave the clips)."""
    p, keep = parameters, (files or (lambda path: gr.update()))
    return [keep(p.get("content")), keep(p.get("style")), p["strength"], p["mode"], p["steps"], p["filters"],
            p["kernel_width"], p["n_fft"], p["sample_rate"], p.get("seconds") or 0, p["seed"]]


def build_tab(app: "Host") -> list[Any]:
    from ui.host import describe
    from ui.progress import in_results

    job_method = AudioStyleRequest.model_fields["method"].default

    def render(content, style, strength, mode, steps, filters, kernel_width, n_fft, sample_rate, seconds, seed,
               request: gr.Request, progress=gr.Progress()):
        from extensions.audio.audioio import fit_length, read_clip
        from extensions.audio.picture import labelled_spectrogram

        job = audio_request(content=content, style=style, strength=strength, mode=mode, steps=steps, filters=filters,
                            kernel_width=kernel_width, n_fft=n_fft, sample_rate=sample_rate, seconds=seconds, seed=seed)
        entry, result = app.execute(job, request, progress)
        try:  # the clips as the method heard them: resampled, cut, the style looped or cropped to the content
            heard_content = read_clip(job.content, "content", job.sample_rate, job.seconds, app.settings)
            heard_style = fit_length(read_clip(job.style, "style", job.sample_rate, heard_content.seconds,
                                               app.settings), len(heard_content.samples))
        except NstdiffError as exc:
            raise gr.Error(str(exc), title="Cannot run this")
        return (str(entry.output), labelled_spectrogram(heard_content.samples, job.sample_rate, "Content"),
                labelled_spectrogram(heard_style.samples, job.sample_rate, "Style"),
                labelled_spectrogram(result.audio, result.sample_rate, "Result"), describe(result))

    with gr.Tab("Audio", id="audio"):
        with gr.Row():
            with gr.Column():
                content = gr.Audio(type="filepath", label="Content clip (voice, melody)", elem_id="audio-content")
                style = gr.Audio(type="filepath", label="Style clip (rain, drums, violin)", elem_id="audio-style")
                strength = gr.Slider(label="Strength", step=0.05, **bounds(AudioStyleRequest, "strength"),
                                     elem_id="audio-strength")
                mode = gr.Radio(["waveform", "spectrogram"], value="waveform", label="Mode",
                                info=AudioStyleRequest.model_fields["mode"].description)
                with gr.Accordion("Settings", open=False):
                    steps = gr.Number(label="Steps", precision=0, **bounds(AudioStyleRequest, "steps"),
                                      elem_id="audio-steps")
                    filters = gr.Number(label="Filters", precision=0, **bounds(AudioStyleRequest, "filters"))
                    kernel_width = gr.Number(label="Kernel width (frames)", precision=0,
                                             **bounds(AudioStyleRequest, "kernel_width"))
                    n_fft = gr.Dropdown(FFT_SIZES, value=AudioStyleRequest.model_fields["n_fft"].default,
                                        label="FFT size")
                    sample_rate = gr.Dropdown(SAMPLE_RATES, value=AudioStyleRequest.model_fields["sample_rate"].default,
                                              label="Sample rate (Hz)")
                    seconds = gr.Number(label=f"Seconds of the content to render (0 = all, at most {MAX_SECONDS:g})",
                                        value=0, minimum=0, maximum=MAX_SECONDS)
                    seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1)
            with gr.Column(elem_classes="result-column"):  # stays in view while the inputs scroll
                with gr.Row():
                    run = gr.Button("Render", variant="primary", elem_id="audio-render", scale=2)
                    stop = gr.Button("Cancel", elem_id="audio-cancel", scale=1)
                result = gr.Audio(type="filepath", label="Result", interactive=False, elem_id="audio-result")
                info = gr.Markdown(elem_id="audio-info")
                status = gr.Markdown()
                # one under another, full width: large enough to read, with time and frequency axes
                with gr.Tabs():
                    with gr.Tab("Result spectrogram"):
                        result_picture = gr.Image(show_label=False, format="png", interactive=False,
                                                  elem_id="audio-result-spectrogram")
                    with gr.Tab("Content"):
                        content_picture = gr.Image(show_label=False, format="png", interactive=False)
                    with gr.Tab("Style"):
                        style_picture = gr.Image(show_label=False, format="png", interactive=False)
        form = [content, style, strength, mode, steps, filters, kernel_width, n_fft, sample_rate, seconds, seed]
        job = run.click(
            in_results(render, text_at=4, width=5), form, [result, content_picture, style_picture, result_picture,
                                                           info], api_name="audio", show_progress_on=[result],
            **app.gpu_queue)
        stop.click(app.cancel, None, status, queue=False, api_name=False)
        run.click(lambda: "", None, status, queue=False, api_name=False, show_progress="hidden")
        app.refills.add("Audio", lambda method: method == job_method, form, refill)
    return [job]
