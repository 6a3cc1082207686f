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
from ui.fast_style_tab import build_fast_style_section
from ui.training_jobs import POLL_SECONDS, describe_job, job_panel, job_view

if TYPE_CHECKING:
    from ui.host import Host

TITLE = "My styles"
LIBRARY_HEADERS = ["name", "base", "trigger", "rank", "steps", "created", "source"]


class LoraActions:
    """What the tab's buttons do, each through the executor; a refusal reaches the person as its message."""

    def __init__(self, app: "Host") -> None:
        self.app = app
        self.datasets = Path(app.settings.outputs_dir) / "lora-datasets"  # kept, so a resumed job finds its images

    def call(self, action: str, **arguments):
        try:
            return self.app.executor.lora(action, **arguments)
        except NstdiffError as exc:
            raise gr.Error(str(exc), title=TITLE)

    def library_rows(self) -> list[list]:  # damaged entries too, so they can be renamed or deleted here
        return [[i.name, "", "", "", "", "", f"damaged: {i.damaged}"] if i.damaged else
                [i.name, i.base or "", i.trigger or "", i.rank or "", i.steps or "", i.created or "", i.source]
                for i in list_loras(self.app.settings, include_damaged=True)]

    def job_names(self) -> list[str]:
        return list(self.call("jobs"))

    def train(self, files, name, trigger, base, steps, rank, resolution, captions):
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the style a name.", title=TITLE)
        folder = self.datasets / checked_name(name)  # checked before any file is touched: no path tricks
        readiness.require(self.app, "lora", base)  # the base model must be on disk: say so now, not in the job's log
        if files:  # a new dataset (replacing this name's old one); none given: the kept one, e.g. to resume
            self.datasets.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.datasets))
            for file in files:
                source = Path(uploaded(file))
                shutil.copyfile(source, staging / source.name)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        elif not folder.is_dir():
            raise gr.Error("Upload a few images of your artwork (and .txt captions if you have them).", title=TITLE)
        state = self.call("train", images=str(folder), name=name, trigger=(trigger or "").strip() or None, base=base,
                          steps=int(steps), rank=int(rank), resolution=int(resolution) or None, captions=captions,
                          checkpoint_every=max(1, int(steps) // 10), sample_every=max(1, int(steps) // 5))
        return gr.update(choices=self.job_names(), value=name), describe_job(name, state)

    def status(self, name):
        return job_view(name, lambda: self.call("jobs").get(name), lambda: self.call("files", name=name))

    def rename(self, old, new):
        self.call("rename", old=old, new=(new or "").strip())
        return self.library_rows()

    def delete(self, name):
        self.call("delete", name=name)
        return self.library_rows()

    def export(self, name):
        exports = Path(self.app.settings.outputs_dir) / "lora-exports"  # one file per LoRA, replaced by the next
        exports.mkdir(parents=True, exist_ok=True)
        file_name = f"{checked_name(name)}_kohya.safetensors"  # checked before it becomes part of a path
        return offer(self.call("export", name=name, destination=exports / file_name))

    def import_file(self, file, name, base, trigger):
        if not file:
            raise gr.Error("Choose a .safetensors LoRA file.", title=TITLE)
        self.call("import", file=Path(uploaded(file)), name=(name or "").strip(), base=base,
                  trigger=(trigger or "").strip() or None)
        return self.library_rows()


def checked_name(name: str) -> str:
    try:
        return check_lora_name(name)
    except NstdiffError as exc:
        raise gr.Error(str(exc), title=TITLE)


def train_form(app: "Host") -> tuple[list[gr.components.Component], gr.Button]:
    """The training form's widgets (files, name, trigger, base, steps, rank, resolution, captions) and Train."""
    families = app.executor.families()
    gr.Markdown("### Train a style from your artwork")
    files = gr.File(file_count="multiple", file_types=["image", ".txt"], label="Images (+ .txt captions)",
                    elem_id="lora-files")
    with gr.Row():
        name = gr.Textbox(label="Name", placeholder="my-ink", elem_id="lora-name")
        trigger = gr.Textbox(label="Trigger word (default: the name)", elem_id="lora-trigger")
    base = gr.Dropdown([(t, n) for n, t in families.items()], value=app.settings.diffusion_family,
                       label="Base model", elem_id="lora-base")
    with gr.Row():
        steps = gr.Number(label="Steps", value=1000, precision=0, minimum=1, maximum=200_000, elem_id="lora-steps")
        rank = gr.Number(label="Rank", value=8, precision=0, minimum=1, maximum=256, elem_id="lora-rank")
        resolution = gr.Number(label="Resolution (0 = the base's native size)", value=0, precision=0, minimum=0,
                               maximum=2048, step=8, elem_id="lora-resolution")
    captions = gr.Radio([("trigger only", "none"), ("from .txt files", "file"), ("automatic", "auto")],
                        value="none", label="Captions", elem_id="lora-captions")
    train = gr.Button("Train (or resume)", variant="primary", elem_id="lora-train")
    return [files, name, trigger, base, steps, rank, resolution, captions], train


def library_section(app: "Host", actions: LoraActions) -> gr.Dataframe:
    """The LoRA library: the table, rename / delete / export, and import; its table."""
    families = app.executor.families()
    gr.Markdown("### Library")
    table = gr.Dataframe(actions.library_rows(), headers=LIBRARY_HEADERS, interactive=False, elem_id="lora-library")
    with gr.Row():
        chosen = gr.Textbox(label="LoRA", elem_id="lora-chosen")
        new_name = gr.Textbox(label="New name")
        rename = gr.Button("Rename")
        delete = gr.Button("Delete", variant="stop")
        export = gr.Button("Export (kohya)")
    exported = gr.File(label="Exported file")
    with gr.Row():
        upload = gr.File(file_types=[".safetensors"], label="Import a .safetensors LoRA")
        name = gr.Textbox(label="Name")
        base = gr.Dropdown([(t, n) for n, t in families.items()], value=app.settings.diffusion_family,
                           label="Its base model")
        trigger = gr.Textbox(label="Trigger")
        import_button = gr.Button("Import")
    rename.click(actions.rename, [chosen, new_name], table, api_name="lora_rename")
    delete.click(actions.delete, chosen, table, api_name="lora_delete")
    export.click(actions.export, chosen, exported, api_name="lora_export")
    import_button.click(actions.import_file, [upload, name, base, trigger], table, api_name="lora_import")
    return table


def build_lora_tab(app: "Host") -> list:
    actions = LoraActions(app)
    with gr.Tab("My styles", id="loras") as tab:
        banner = readiness.banner(app, "lora", "lora")
        with gr.Row():
            with gr.Column():
                form, train = train_form(app)
            with gr.Column():
                gr.Markdown("### Training jobs")
                job, outputs = job_panel(actions.job_names(), "lora")
        table = library_section(app, actions)
        build_fast_style_section(app)
    gr.Timer(POLL_SECONDS).tick(actions.status, job, outputs, queue=False, api_name=False, show_progress="hidden")
    job.change(actions.status, job, outputs, queue=False, api_name="lora_status", show_progress="hidden")
    train.click(actions.train, form, [job, outputs[0]], api_name="lora_train")
    tab.select(lambda: (actions.library_rows(), gr.update(choices=actions.job_names())), None, [table, job],
               queue=False, api_name="lora_library", show_progress="hidden")
    banner.wire(app, tab, form[3])
    return []
