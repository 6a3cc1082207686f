"""The app's 3D tab: upload a model and a style image, get the model back textured, viewed in 3D, in three formats.

Torch-free: it builds a `MeshStyleRequest` and hands it to the app's executor like every other tab.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from pydantic import ValidationError

from nstdiff.errors import InputError, NstdiffError, format_validation_error
from extensions.mesh.schema import MODEL_SUFFIXES, MeshStyleRequest
from ui.files import uploaded

if TYPE_CHECKING:
    from ui.host import Host

FIELDS = MeshStyleRequest.model_fields
# an OBJ arrives with its .mtl and textures, a .gltf with its .bin: all uploaded together
COMPANION_SUFFIXES = (".mtl", ".bin", ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tga")


def gather_upload(files, folder: Path) -> Path:
    """Copy the uploaded files into one folder (Gradio keeps each upload apart, so an OBJ could not find its MTL) and
    return the model among them."""
    paths = [Path(uploaded(f)) for f in (files if isinstance(files, list) else [files] if files else [])]
    models = [p for p in paths if p.suffix.lower() in MODEL_SUFFIXES]
    if len(models) != 1:
        found = ", ".join(p.name for p in paths) or "nothing"
        raise InputError(f"upload exactly one 3D model ({', '.join(MODEL_SUFFIXES)}), with its .mtl/.bin/textures "
                         f"if it has them; got {found}")
    others = [p for p in paths if p not in models and p.suffix.lower() not in COMPANION_SUFFIXES]
    if others:
        raise InputError(f"cannot use {', '.join(p.name for p in others)} with a 3D model; upload the model and "
                         "its .mtl, .bin or texture images")
    for path in paths:
        shutil.copyfile(path, folder / path.name)
    return folder / models[0].name


def refill(parameters: dict, files) -> list:
    """The form's values from a past 3D result (`files(path)`: the file to show; None: leave the files)."""
    p, keep = parameters, (files or (lambda path: gr.update()))
    model = keep(p.get("model"))
    return [[model] if isinstance(model, str) else model, keep(p.get("style")), p["mode"], p["views"],
            p["view_size"], p.get("steps") or 0, p["texture_size"], p["strength"], p["seed"], p["encoder"]]


def build_tab(app: "Host") -> list:
    from ui.progress import in_results

    def run(files, style, mode, views, view_size, steps, texture_size, strength, seed, encoder,
            request: gr.Request, progress=gr.Progress()):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                model = gather_upload(files, Path(tmp))
                if not style:
                    raise InputError("upload a style image")
                job = MeshStyleRequest(
                    model=model, style=Path(uploaded(style)), mode=mode, views=int(views), view_size=int(view_size),
                    steps=int(steps) or None, texture_size=int(texture_size), strength=float(strength),
                    seed=None if seed is None or int(seed) < 0 else int(seed), encoder=encoder)
            except NstdiffError as exc:
                raise gr.Error(str(exc), title="Check the inputs")
            except ValidationError as exc:  # a number out of its bounds
                raise gr.Error(format_validation_error(exc), title="Check the inputs")
            entry, result = app.execute(job, request, progress)
        glb = entry.output
        downloads = [glb, result.save(glb.with_suffix(".zip")), result.save(glb.with_suffix(".ply"))]
        m = result.measures
        info = (f"**{result.method}** · encoder **{result.encoder}** · seed **{result.seed}** · "
                f"{result.timings.get('total', 0):.1f} s · seam jump {m.get('seam_jump', 0):.1f}/255 · "
                f"coverage {m.get('coverage', 0):.0%} · style loss {m.get('style_loss_start', 0):.3g} → "
                f"{m.get('style_loss_end', 0):.3g}" + "".join(f"\n- {note}" for note in result.notes))
        return str(glb), [str(p) for p in downloads], info

    with gr.Tab("3D", id="mesh"):
        with gr.Row():
            with gr.Column():
                files = gr.File(file_count="multiple", label="3D model (GLB, GLTF+BIN, OBJ+MTL+textures, PLY, STL)",
                                file_types=[*MODEL_SUFFIXES, *COMPANION_SUFFIXES], elem_id="mesh-model")
                style = gr.File(file_types=["image"], label="Style image", elem_id="mesh-style")
                mode = gr.Radio(["field", "texture"], value=FIELDS["mode"].default, label="Mode",
                                info=FIELDS["mode"].description)
                with gr.Row():
                    views = gr.Slider(1, 32, value=FIELDS["views"].default, step=1, label="Views",
                                      info=FIELDS["views"].description)
                    view_size = gr.Slider(32, 512, value=FIELDS["view_size"].default, step=32,
                                          label="View size (px)")
                with gr.Row():
                    steps = gr.Number(label="Steps (0 = default)", value=0, precision=0, minimum=0, maximum=10_000)
                    texture_size = gr.Slider(64, min(4096, app.settings.max_output_side), step=64,
                                             value=FIELDS["texture_size"].default, label="Texture size (px)")
                strength = gr.Slider(0, 1, value=FIELDS["strength"].default, step=0.05, label="Strength",
                                     info=FIELDS["strength"].description)
                with gr.Row():
                    seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1)
                    encoder = gr.Dropdown(["auto", "vgg19", "vgg16", "random"], value=app.settings.default_encoder,
                                          label="Encoder")
            with gr.Column(elem_classes="result-column"):  # stays in view while the inputs scroll
                with gr.Row():
                    go = gr.Button("Texture the model", variant="primary", elem_id="mesh-run", scale=2)
                    stop = gr.Button("Cancel", elem_id="mesh-cancel", scale=1)
                viewer = gr.Model3D(label="Result", elem_id="mesh-result")
                downloads = gr.File(label="Downloads: GLB, OBJ+MTL+PNG (.zip), PLY (vertex colours)",
                                    file_count="multiple", interactive=False, elem_id="mesh-downloads")
                info = gr.Markdown(elem_id="mesh-info")
                status = gr.Markdown()
        inputs = [files, style, mode, views, view_size, steps, texture_size, strength, seed, encoder]
        job = go.click(
            in_results(run, text_at=2, width=3), inputs, [viewer, downloads, info], api_name="mesh",
            show_progress_on=[viewer], **app.gpu_queue)
        stop.click(app.cancel, None, status, queue=False, api_name=False)
        go.click(lambda: "", None, status, queue=False, api_name=False, show_progress="hidden")
        app.refills.add("3D", lambda method: method == FIELDS["method"].default, inputs, refill)
    return [job]
