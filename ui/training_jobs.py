"""A training job as the app shows it (LoRA and fast style networks alike): its status line with the time left, its
loss curve, newest sample and log tail, read from the job's folder every few seconds. No torch here.
"""
from __future__ import annotations

import gradio as gr

from ui.files import offer

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
