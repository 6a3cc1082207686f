"""My styles → Fast style network: train a per-style network for one painting on your photos (Johnson et al. 2016)
as a background job, follow it, try it on a photo, and keep the library.

The job runs in its own process like LoRA training (`nstdiff/training/background.py`); this section only starts it
and reads its folder every few seconds, so a reload or an app restart shows the same job, and Train with the same
settings resumes an interrupted one from its last checkpoint. No torch here.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from pydantic import ValidationError

from nstdiff.errors import NstdiffError, format_validation_error
from nstdiff.schema import Controls, ImageStyleRequest
from nstdiff.training.fast_style_data import (FastStyleTraining, check_network_name, delete_network, list_networks,
                                              start_training, training_files, training_states)
from ui.files import uploaded
from ui.host import describe
from ui.training_jobs import POLL_SECONDS, describe_job, job_panel, job_view

if TYPE_CHECKING:
    from ui.host import Host

TITLE = "Fast style network"
HEADERS = ["name", "painting", "steps", "px", "style loss", "created"]


def build_fast_style_section(app: "Host") -> None:
    settings = app.settings
    uploads = Path(settings.outputs_dir) / "fast-style-datasets"  # kept, so a resumed job finds its photos

    def checked(action, *args, **kwargs):
        try:
            return action(*args, **kwargs, settings=settings)
        except NstdiffError as exc:
            raise gr.Error(str(exc), title=TITLE)

    def library_rows():
        return [[i.name, i.painting, i.steps, i.resolution, f"{i.style_loss:.3g}" if i.style_loss is not None else "",
                 i.created] for i in checked(list_networks)]

    def job_names():
        return list(checked(training_states))

    def train(painting, photos, name, steps, resolution):
        name = (name or "").strip()
        try:
            folder = uploads / check_network_name(name)  # checked before any file is touched: no path tricks
        except NstdiffError as exc:
            raise gr.Error(str(exc), title=TITLE)
        if painting or photos:  # a new dataset for this name; none: the kept one, e.g. to resume
            if not (painting and photos):
                raise gr.Error("Upload the painting and a few photos (at least 2) together.", title=TITLE)
            uploads.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=uploads))
            (staging / "photos").mkdir()
            source = Path(uploaded(painting))
            shutil.copyfile(source, staging / f"painting{source.suffix.lower()}")
            for file in photos:
                source = Path(uploaded(file))
                shutil.copyfile(source, staging / "photos" / source.name)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        elif not folder.is_dir():
            raise gr.Error("Upload the painting and a few photos to learn it from.", title=TITLE)
        try:
            # the server's own encoder when it names one; else vgg16, which the defaults were measured with
            encoder = "vgg16" if settings.default_encoder == "auto" else settings.default_encoder
            config = FastStyleTraining(name=name, style=next(folder.glob("painting.*"), folder / "painting.png"),
                                       images=folder / "photos", steps=int(steps), resolution=int(resolution),
                                       encoder=encoder, checkpoint_every=max(1, int(steps) // 10))
        except ValidationError as exc:
            raise gr.Error(format_validation_error(exc), title=TITLE)
        state = checked(start_training, config)
        return gr.update(choices=job_names(), value=name), describe_job(name, state)

    def status(name):
        return job_view(name, lambda: checked(training_states).get(name), lambda: checked(training_files, name))

    def delete(name):
        checked(delete_network, (name or "").strip())
        return library_rows(), gr.update(choices=[row[0] for row in library_rows()])

    def refresh():
        rows = library_rows()
        return rows, gr.update(choices=job_names()), gr.update(choices=[row[0] for row in rows])

    def stylize(photo, network, strength, size, request: gr.Request = None, progress=gr.Progress()):
        if not photo or not network:
            raise gr.Error("Add a photo and pick a trained network.", title=TITLE)
        try:
            job = ImageStyleRequest(method="fast-style", content=uploaded(photo), size=int(size),
                                    controls=Controls(strength=strength), options={"network": network})
        except ValidationError as exc:
            raise gr.Error(format_validation_error(exc), title=TITLE)
        entry, result = app.execute(job, request, progress)
        return str(entry.output), describe(result)

    with gr.Accordion(f"{TITLE}: learn one painting, then restyle in a fraction of a second", open=False):
        with gr.Row():
            with gr.Column():
                painting = gr.File(file_types=["image"], label="Painting", elem_id="fast-painting")
                photos = gr.File(file_count="multiple", file_types=["image"], label="Photos to learn on (the last "
                                 "is kept aside for the sample)", elem_id="fast-photos")
                with gr.Row():
                    name = gr.Textbox(label="Name", placeholder="starry-night", elem_id="fast-name")
                    steps = gr.Number(label="Steps", value=500, precision=0, minimum=1, maximum=200_000,
                                      elem_id="fast-steps")
                    resolution = gr.Number(label="Crop size (px)", value=256, precision=0, minimum=32, maximum=1024,
                                           step=4, elem_id="fast-resolution")
                train_button = gr.Button("Train (or resume)", variant="primary", elem_id="fast-train")
            with gr.Column():
                job, outputs = job_panel(job_names(), "fast")
        table = gr.Dataframe(library_rows(), headers=HEADERS, interactive=False, elem_id="fast-library")
        with gr.Row():
            chosen = gr.Textbox(label="Network", elem_id="fast-chosen")
            delete_button = gr.Button("Delete", variant="stop")
            refresh_button = gr.Button("Refresh")
        with gr.Row():
            with gr.Column():
                photo = gr.File(file_types=["image"], label="Try it on a photo", elem_id="fast-photo")
                network = gr.Dropdown([row[0] for row in library_rows()], label="Network", elem_id="fast-network")
                strength = gr.Slider(label="Strength", step=0.05, minimum=0, maximum=1, value=1.0,
                                     info="1: as trained; lower moves toward the photo's own style")
                size = gr.Slider(label="Size (longest side, px)", step=16, minimum=64,
                                 maximum=settings.max_output_side, value=512)
                run = gr.Button("Restyle", elem_id="fast-run")
            with gr.Column():
                output = gr.Image(label="Result", format="png", type="filepath", interactive=False)
                info = gr.Markdown()

    gr.Timer(POLL_SECONDS).tick(status, job, outputs, queue=False, api_name=False, show_progress="hidden")
    job.change(status, job, outputs, queue=False, api_name="fast_status", show_progress="hidden")
    train_button.click(train, [painting, photos, name, steps, resolution], [job, outputs[0]], api_name="fast_train")
    refresh_button.click(refresh, None, [table, job, network], queue=False, api_name="fast_library")
    delete_button.click(delete, chosen, [table, network], api_name="fast_delete")
    run.click(stylize, [photo, network, strength, size], [output, info], api_name="fast_stylize", **app.gpu_queue)
