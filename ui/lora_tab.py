"""The My styles tab: train a LoRA from uploaded artwork as a background job, follow it, and keep the library; the
fast style networks' section (`ui/fast_style_tab.py`) sits below it.

Training runs in its own process (see `nstdiff/training/background.py`); this tab only starts it and reads its
folder every few seconds, so a page reload or an app restart shows the same job, and an interrupted one resumes from
its last checkpoint with Train. No torch here.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from nstdiff.errors import NstdiffError
from nstdiff.loras import check_lora_name, list_loras
from ui.files import offer, uploaded
from ui import readiness

if TYPE_CHECKING:
    from ui.app import App

POLL_SECONDS = 2.0


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def describe_job(name: str, state) -> str:
    if state is None:
        return f"**{name}**: no training job"
    line = f"**{name}**: {state.status}, step {state.step} of {state.steps}"
    if state.loss is not None:
        line += f" · loss {state.loss:.4g}"
    if state.status == "running":
        line += f" · {state.seconds_per_step or 0:.2f} s/step · about {_minutes(state.eta_seconds)} left"
    if state.status == "interrupted":
        line += " · press Train with the same settings to resume from the last checkpoint"
    if state.error:
        line += f"  \n{state.error}"
    return line


def job_view(name: str | None, state, files) -> tuple:
    """(status line, loss curve, newest sample, log tail) of the job `name` for the app, from `state()` and
    `files()`; the pictures are offered as copies, never from their folder."""
    if not name:
        return "No job selected.", None, None, ""
    loss, sample, log = files()
    return describe_job(name, state()), (offer(loss) if loss else None), (offer(sample) if sample else None), log


def job_panel(choices: list[str], prefix: str):
    """The job picker, and the (status line, loss curve, latest sample, log tail) components that show its job."""
    job = gr.Dropdown(choices, label="Job", allow_custom_value=True, elem_id=f"{prefix}-job")
    job_status = gr.Markdown(elem_id=f"{prefix}-status")
    with gr.Row():
        loss_curve = gr.Image(label="Loss", type="filepath", interactive=False, format="png")
        sample = gr.Image(label="Latest sample", type="filepath", interactive=False, format="png")
    log = gr.Textbox(label="Log (last lines)", lines=3)
    return job, [job_status, loss_curve, sample, log]


def build_lora_tab(app: "App") -> list:
    executor, settings = app.executor, app.settings
    datasets = Path(settings.outputs_dir) / "lora-datasets"  # uploads kept, so a resumed job finds its images

    def call(action: str, **arguments):
        try:
            return executor.lora(action, **arguments)
        except NstdiffError as exc:
            raise gr.Error(str(exc), title="My styles")

    def library_rows():  # damaged entries too, so they can be renamed or deleted here
        return [[i.name, "", "", "", "", "", f"damaged: {i.damaged}"] if i.damaged else
                [i.name, i.base or "", i.trigger or "", i.rank or "", i.steps or "", i.created or "", i.source]
                for i in list_loras(settings, include_damaged=True)]

    def job_names():
        return list(call("jobs"))

    def train(files, name, trigger, base, steps, rank, resolution, captions):
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the style a name.", title="My styles")
        try:
            folder = datasets / check_lora_name(name)  # checked before any file is touched: no path tricks
        except NstdiffError as exc:
            raise gr.Error(str(exc), title="My styles")
        readiness.require(app, "lora", base)  # the base model must be on disk: say so now, not in the job's log
        if files:  # a new dataset (replacing this name's old one); none given: the kept one, e.g. to resume
            datasets.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=datasets))
            for file in files:
                source = Path(uploaded(file))
                shutil.copyfile(source, staging / source.name)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        elif not folder.is_dir():
            raise gr.Error("Upload a few images of your artwork (and .txt captions if you have them).",
                           title="My styles")
        state = call("train", images=str(folder), name=name, trigger=(trigger or "").strip() or None, base=base,
                     steps=int(steps), rank=int(rank), resolution=int(resolution) or None, captions=captions,
                     checkpoint_every=max(1, int(steps) // 10), sample_every=max(1, int(steps) // 5))
        return gr.update(choices=job_names(), value=name), describe_job(name, state)

    def status(name):
        return job_view(name, lambda: call("jobs").get(name), lambda: call("files", name=name))

    def rename(old, new):
        call("rename", old=old, new=(new or "").strip())
        return library_rows()

    def delete(name):
        call("delete", name=name)
        return library_rows()

    def export(name):
        exports = Path(settings.outputs_dir) / "lora-exports"  # one file per LoRA, replaced by the next export
        exports.mkdir(parents=True, exist_ok=True)
        try:
            file_name = f"{check_lora_name(name)}_kohya.safetensors"  # checked before it becomes part of a path
        except NstdiffError as exc:
            raise gr.Error(str(exc), title="My styles")
        return offer(call("export", name=name, destination=exports / file_name))

    def import_file(file, name, base, trigger):
        if not file:
            raise gr.Error("Choose a .safetensors LoRA file.", title="My styles")
        call("import", file=Path(uploaded(file)), name=(name or "").strip(), base=base,
             trigger=(trigger or "").strip() or None)
        return library_rows()

    families = executor.families()
    with gr.Tab("My styles", id="loras") as tab:
        banner = readiness.banner(app, "lora", "lora")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Train a style from your artwork")
                files = gr.File(file_count="multiple", file_types=["image", ".txt"], label="Images (+ .txt captions)",
                                elem_id="lora-files")
                with gr.Row():
                    name = gr.Textbox(label="Name", placeholder="my-ink", elem_id="lora-name")
                    trigger = gr.Textbox(label="Trigger word (default: the name)", elem_id="lora-trigger")
                base = gr.Dropdown([(t, n) for n, t in families.items()], value=settings.diffusion_family,
                                   label="Base model", elem_id="lora-base")
                with gr.Row():
                    steps = gr.Number(label="Steps", value=1000, precision=0, minimum=1, maximum=200_000,
                                      elem_id="lora-steps")
                    rank = gr.Number(label="Rank", value=8, precision=0, minimum=1, maximum=256, elem_id="lora-rank")
                    resolution = gr.Number(label="Resolution (0 = the base's native size)", value=0, precision=0, minimum=0, maximum=2048,
                                           step=8, elem_id="lora-resolution")
                captions = gr.Radio([("trigger only", "none"), ("from .txt files", "file"), ("automatic", "auto")],
                                    value="none", label="Captions", elem_id="lora-captions")
                train_button = gr.Button("Train (or resume)", variant="primary", elem_id="lora-train")
            with gr.Column():
                gr.Markdown("### Training jobs")
                job, outputs = job_panel(job_names(), "lora")
        gr.Markdown("### Library")
        table = gr.Dataframe(library_rows(), headers=["name", "base", "trigger", "rank", "steps", "created", "source"],
                             interactive=False, elem_id="lora-library")
        with gr.Row():
            chosen = gr.Textbox(label="LoRA", elem_id="lora-chosen")
            new_name = gr.Textbox(label="New name")
            rename_button = gr.Button("Rename")
            delete_button = gr.Button("Delete", variant="stop")
            export_button = gr.Button("Export (kohya)")
        exported = gr.File(label="Exported file")
        with gr.Row():
            import_upload = gr.File(file_types=[".safetensors"], label="Import a .safetensors LoRA")
            import_name = gr.Textbox(label="Name")
            import_base = gr.Dropdown([(t, n) for n, t in families.items()], value=settings.diffusion_family,
                                      label="Its base model")
            import_trigger = gr.Textbox(label="Trigger")
            import_button = gr.Button("Import")
        from ui.fast_style_tab import build_fast_style_section  # imported here: it reuses this module's job display

        build_fast_style_section(app)

    timer = gr.Timer(POLL_SECONDS)
    timer.tick(status, job, outputs, queue=False, api_name=False, show_progress="hidden")
    job.change(status, job, outputs, queue=False, api_name="lora_status", show_progress="hidden")
    train_button.click(train, [files, name, trigger, base, steps, rank, resolution, captions], [job, outputs[0]],
                       api_name="lora_train")
    tab.select(lambda: (library_rows(), gr.update(choices=job_names())), None, [table, job], queue=False,
               api_name="lora_library", show_progress="hidden")
    rename_button.click(rename, [chosen, new_name], table, api_name="lora_rename")
    delete_button.click(delete, chosen, table, api_name="lora_delete")
    export_button.click(export, chosen, exported, api_name="lora_export")
    import_button.click(import_file, [import_upload, import_name, import_base, import_trigger], table,
                        api_name="lora_import")
    banner.wire(app, tab, base)
    return []
