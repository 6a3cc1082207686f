"""The Text style and Style reference tabs: diffusion methods over the app's shared queue, progress and history.

Built like the extensions' tabs (`build(app)` returns the job events), from the same typed request; no torch here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from nstdiff.errors import NstdiffError
from nstdiff.schema import MAX_PROMPT_CHARS, Controls
from ui import readiness
from ui.files import uploaded
from ui.forms import bounds, image_request, option_fields
from ui.image_form import option_widget
from ui.library_gallery import next_best, preset_thumbnails, text_library
from ui.mask_words import words_controls
from ui.progress import in_results

if TYPE_CHECKING:
    from ui.host import Host

STRUCTURES = [("off", "none"), ("edges (canny)", "canny"), ("depth", "depth")]
LORA_SLOTS = 3  # "My styles": up to this many of the person's LoRAs, each with its weight slider


def lora_choices(app: "Host") -> list[str]:
    return [info.name for info in app.executor.loras()]


def my_styles(app: "Host", prefix: str):
    """Up to LORA_SLOTS pickers of the person's LoRAs with weight sliders; returns (names, weights) components."""
    names, weights = [], []
    choices = lora_choices(app)
    with gr.Accordion("My styles (your LoRAs)", open=False):
        for slot in range(LORA_SLOTS):
            with gr.Row():
                # the list is refreshed when the tab opens; the core checks the name and explains a wrong one
                names.append(gr.Dropdown(choices, value=None, label=f"LoRA {slot + 1}", allow_custom_value=True,
                                         elem_id=f"{prefix}-lora-{slot}"))
                weights.append(gr.Slider(-2, 2, value=0.8, step=0.05, label="weight",
                                         elem_id=f"{prefix}-lora-weight-{slot}"))
    return names, weights


def chosen_loras(values: tuple) -> list[str]:
    """`name:weight` for each filled slot, from the slots' values (names first, then weights)."""
    names, weights = values[:LORA_SLOTS], values[LORA_SLOTS:]
    return [f"{name}:{weight}" for name, weight in zip(names, weights) if name]


def diffusion_request(*, method: str, content, styles: list, prompt: str | None, strength: float, size, steps, seed,
                      options: dict[str, Any], only: str | None = None, except_: str | None = None):
    """Form values as a diffusion request (`only` / `except_`: the part of the photo to change, in words); a bad value
    reaches the person as a message."""
    words = words_controls({"mask_only": only, "mask_except": except_})
    if (words["only"] or words["except"]) and not content:
        raise gr.Error("Only / Except name parts of a photo: add the photo, or clear them", title="Check the inputs")
    try:
        request = image_request(method=method, content=uploaded(content) if content else None,
                                styles=[uploaded(s) for s in styles], weights=None, size=size, steps=steps, seed=seed,
                                encoder="auto", strength=strength, preserve_color="none", style_scale=1.0,
                                options={k: v for k, v in options.items() if v not in (None, "", "none")},
                                prompt=prompt, words=words)
    except NstdiffError as exc:
        raise gr.Error(str(exc), title="Check the inputs")
    return request


def common_values(app: "Host", p: dict[str, Any]) -> list[Any]:
    """Structure, model family, fast mode, size, steps and seed (`_common`'s widgets) from a result's parameters; a
    model named by folder or repo id (not a family) leaves the family as it is."""
    options = p.get("options") or {}
    model = options.get("model") or app.settings.diffusion_family
    return [options.get("structure", "none"), model if model in app.executor.families() else gr.update(),
            bool(options.get("fast")), p["size"], p.get("steps") or 0, p["seed"]]


def where_in_words(prefix: str) -> tuple[gr.Textbox, gr.Textbox]:
    """Only / Except: the part of the photo a diffusion run may change, named in words (a segmentation model); the
    rest comes back exactly as it was."""
    with gr.Accordion("Only part of the photo (in words)", open=False):
        only = gr.Textbox("", label="Only", placeholder="the dog", elem_id=f"{prefix}-only",
                          info=Controls.model_fields["only"].description)
        except_ = gr.Textbox("", label="Except", placeholder="faces", elem_id=f"{prefix}-except",
                             info=Controls.model_fields["except_"].description)
    return only, except_


def words_values(p: dict[str, Any]) -> list[str]:
    """Only / Except (`where_in_words`) from a result's parameters."""
    controls = p.get("controls") or {}
    return [", ".join(controls.get("only") or []), ", ".join(controls.get("except_") or [])]


def _common(app: "Host", prefix: str):
    """Model family, fast mode, structure, size, steps and seed: the controls both tabs share."""
    families = app.executor.families()
    family = gr.Dropdown([(title, name) for name, title in families.items()], value=app.settings.diffusion_family,
                         label="Model family", elem_id=f"{prefix}-model",
                         info="Another diffusers model: from the command line or Python (--model FOLDER or repo id); "
                              "a browser names no server folders.")
    fast = gr.Checkbox(label="Fast mode (1–4 steps: Turbo models, or LCM-LoRA)", elem_id=f"{prefix}-fast")
    structure = gr.Radio(STRUCTURES, value="none", label="Keep the photo's structure (ControlNet)",
                         elem_id=f"{prefix}-structure")
    with gr.Row():
        size = gr.Slider(label="Size (longest side, px)", step=8, minimum=64, maximum=app.settings.max_output_side,
                         value=512, elem_id=f"{prefix}-size")
        steps = gr.Number(label="Steps (0 = model default)", value=0, precision=0, minimum=0, maximum=200,
                          elem_id=f"{prefix}-steps")
        seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, minimum=-1, elem_id=f"{prefix}-seed")
    return family, fast, structure, size, steps, seed


def _result_column(prefix: str):
    """Restyle and Cancel above the result, in a column that stays in view while the inputs scroll (`ui/look.py`)."""
    with gr.Column(elem_classes="result-column"):
        with gr.Row():
            run = gr.Button("Restyle", variant="primary", elem_id=f"{prefix}-run", scale=2)
            stop = gr.Button("Cancel", elem_id=f"{prefix}-cancel", scale=1)
        output = gr.Image(label="Result", format="png", type="filepath", interactive=False,
                          elem_id=f"{prefix}-result", height="58vh")
        info = gr.Markdown(elem_id=f"{prefix}-info")
        status = gr.Markdown()
    return output, info, status, run, stop


def build_text_tab(app: "Host") -> list:
    presets = app.executor.presets()
    by_name = {p.name: p for p in presets}

    def text_style(content, prompt, preset, negative, strength, structure, family, fast, size, steps, seed,
                   lora_1=None, lora_2=None, lora_3=None, weight_1=0.8, weight_2=0.8, weight_3=0.8, only="",
                   except_="", library=None, request: gr.Request = None, progress=gr.Progress()):
        if not (prompt or "").strip() and preset in (None, "none"):
            raise gr.Error("Describe a style in words, or pick a preset.", title="Check the inputs")
        loras = chosen_loras((lora_1, lora_2, lora_3, weight_1, weight_2, weight_3))
        # auto: diffusion-text when the model is on disk, else the words matched to the style library (`library`:
        # a runner-up painting chosen with its button)
        job = diffusion_request(method="auto", content=content, styles=[], prompt=prompt,
                                strength=strength, size=size, steps=steps, seed=seed,
                                options={"preset": preset, "negative_prompt": negative or None,
                                         "structure": structure, "model": family, "fast": fast,
                                         "loras": loras or None, "library": library}, only=only, except_=except_)
        yield from app.live(job, request, progress)  # live previews from the latents, then the result

    def show_preset(name: str):
        preset = by_name.get(name)
        if preset is None:
            return gr.update(), ""
        return gr.update(value=preset.strength), f"`{preset.prompt}`  \nnegative: `{preset.negative or '-'}`"

    with gr.Tab("Text style", id="text") as tab:
        banner = readiness.banner(app, "text", "text")
        with gr.Row():
            with gr.Column():
                content = gr.File(file_types=["image"], label="Photo (optional: without one, a new image)",
                                  elem_id="text-content")
                prompt = gr.Textbox(label="Style in words", placeholder="e.g. ukiyo-e woodblock print, or what to "
                                    "paint with a preset", max_length=MAX_PROMPT_CHARS, elem_id="text-prompt")
                preset = gr.Dropdown([("none", "none")] + [(f"{p.title} ({p.name})", p.name) for p in presets],
                                     value="none", label=f"Preset ({len(presets)})", elem_id="text-preset")
                preset_info = gr.Markdown()
                shelf = text_library(app, prompt, preset, presets)
                negative = gr.Textbox(label="Negative prompt (empty: the preset's)", elem_id="text-negative")
                strength = gr.Slider(label="Strength", step=0.05, **{**bounds(Controls, "strength"),
                                     "info": "0 keeps the photo, 1 repaints it"}, elem_id="text-strength")
                family, fast, structure, size, steps, seed = _common(app, "text")
                only, except_ = where_in_words("text")
                lora_names, lora_weights = my_styles(app, "text")
            output, info, status, run, stop = _result_column("text")
        again = next_best("text")
    preset.change(show_preset, preset, [strength, preset_info], queue=False, api_name=False,
                  show_progress="hidden")
    tab.select(lambda: [gr.update(choices=lora_choices(app))] * LORA_SLOTS, None, lora_names, queue=False,
               api_name=False, show_progress="hidden")
    stop.click(app.cancel, None, status, queue=False, api_name=False)
    form = [content, prompt, preset, negative, strength, structure, family, fast, size, steps, seed, *lora_names,
            *lora_weights, only, except_]
    job = run.click(in_results(text_style), form, [output, info], api_name="text_style", show_progress_on=[info],
                    **app.gpu_queue)
    banner.wire(app, tab, family)
    tab.select(lambda progress=gr.Progress(): preset_thumbnails(app, presets, progress), None,
               [shelf.presets, shelf.preset_names], api_name=False, show_progress_on=[shelf.presets], **app.gpu_queue)
    reruns = again.wire(app, job, output, in_results(text_style), form, [output, info])

    def refill(p: dict[str, Any], files) -> list[Any]:
        options, library = p.get("options") or {}, p.get("library")
        # words matched to a library painting ran as Gram/feed-forward: the words come back, the painting is theirs
        words = library["words"] if library else p.get("prompt") or ""
        loras = (options.get("loras") or [])[:LORA_SLOTS]
        slots = [None] * LORA_SLOTS
        return [files(p.get("content")) if files else gr.update(), words,
                "none" if library else options.get("preset") or "none", options.get("negative_prompt") or "",
                p["controls"]["strength"], *common_values(app, p),
                *[use["name"] for use in loras], *slots[len(loras):],
                *[use["weight"] for use in loras], *[0.8] * (LORA_SLOTS - len(loras)), *words_values(p)]

    app.refills.add("Text style", "diffusion-text".__eq__, form, refill, claims=lambda p: bool(p.get("library")))
    return [job, *reruns]


TECHNIQUES = [("IP-Adapter (InstantStyle)", "diffusion-reference"), ("StyleID (attention injection)",
              "diffusion-styleid"), ("StyleAligned (shared attention)", "diffusion-stylealigned")]
# each attention technique's knobs, in the order of `reference`'s parameters (their widgets come from the options)
KNOBS = {"diffusion-styleid": ("gamma", "temperature", "injection_layers", "injection_steps", "initial_adain"),
         "diffusion-stylealigned": ("temperature", "injection_layers", "injection_steps")}


def technique_knobs(app: "Host") -> tuple[dict[str, gr.Group], list]:
    """A group of knob widgets per attention technique (hidden until chosen); returns the groups and the widgets."""
    infos = {m.name: m for m in app.executor.methods()}
    groups, widgets = {}, []
    for method, names in KNOBS.items():
        fields = {f.name: f for f in option_fields(infos[method])}
        with gr.Group(visible=False) as groups[method]:
            widgets.extend(option_widget(fields[name]) for name in names)
    return groups, widgets


def knob_options(technique: str, values: tuple) -> dict[str, Any]:
    """The chosen technique's options from all the knob widgets' values (`KNOBS` order)."""
    offset = 0
    for method, names in KNOBS.items():
        if method == technique:
            return dict(zip(names, values[offset:offset + len(names)]))
        offset += len(names)
    return {}


def build_reference_tab(app: "Host") -> list:
    def reference(content, style, prompt, mode, reference_scale, strength, structure, family, fast, size, steps,
                  seed, technique="diffusion-reference", styleid_gamma=None, styleid_temperature=None,
                  styleid_injection_layers=None, styleid_injection_steps=None, styleid_initial_adain=None,
                  stylealigned_temperature=None, stylealigned_injection_layers=None,
                  stylealigned_injection_steps=None, only="", except_="", request: gr.Request = None,
                  progress=gr.Progress()):
        if not style:
            raise gr.Error("Add a style reference image.", title="Check the inputs")
        ip_adapter = technique == "diffusion-reference"
        readiness.require(app, "reference" if ip_adapter else "text", family)
        options = {"structure": structure, "model": family, "fast": fast}
        if ip_adapter:
            options.update(mode=mode, reference_scale=reference_scale)
        else:
            options.update(knob_options(technique, (
                styleid_gamma, styleid_temperature, styleid_injection_layers, styleid_injection_steps,
                styleid_initial_adain, stylealigned_temperature, stylealigned_injection_layers,
                stylealigned_injection_steps)))
        job = diffusion_request(method=technique, content=content, styles=[style], prompt=prompt,
                                strength=strength, size=size, steps=steps, seed=seed, options=options, only=only,
                                except_=except_)
        yield from app.live(job, request, progress)  # live previews from the latents, then the result

    with gr.Tab("Style reference", id="reference") as tab:
        banner = readiness.banner(app, "reference", "ref")
        with gr.Row():
            with gr.Column():
                content = gr.File(file_types=["image"], label="Photo (optional)", elem_id="ref-content")
                style = gr.File(file_types=["image"], label="Style reference image", elem_id="ref-style")
                prompt = gr.Textbox(label="Prompt (optional)", elem_id="ref-prompt")
                technique = gr.Radio(TECHNIQUES, value="diffusion-reference", label="Technique",
                                     elem_id="ref-technique",
                                     info="IP-Adapter needs its adapter; StyleID (a photo) and StyleAligned inject "
                                          "the reference into the model's own attention, no add-on")
                with gr.Group() as ip_group:
                    mode = gr.Radio([("style only (InstantStyle)", "style"), ("style + layout", "layout"),
                                     ("everything (plain IP-Adapter)", "full")], value="style", label="Take from the "
                                    "reference", elem_id="ref-mode")
                    reference_scale = gr.Slider(label="Reference strength", minimum=0, maximum=2, step=0.05,
                                                value=1.0, elem_id="ref-scale")
                groups, knobs = technique_knobs(app)
                strength = gr.Slider(label="Strength", step=0.05, **{**bounds(Controls, "strength"),
                                     "info": "0 keeps the photo, 1 repaints it"}, elem_id="ref-strength")
                family, fast, structure, size, steps, seed = _common(app, "ref")
                only, except_ = where_in_words("ref")
            output, info, status, run, stop = _result_column("ref")
    technique.change(lambda chosen: [gr.update(visible=chosen == "diffusion-reference")]
                     + [gr.update(visible=chosen == method) for method in groups], technique,
                     [ip_group, *groups.values()], queue=False, api_name=False, show_progress="hidden")
    stop.click(app.cancel, None, status, queue=False, api_name=False)
    form = [content, style, prompt, mode, reference_scale, strength, structure, family, fast, size, steps, seed,
            technique, *knobs, only, except_]
    job = run.click(in_results(reference), form, [output, info], api_name="style_reference", show_progress_on=[info],
                    **app.gpu_queue)
    banner.wire(app, tab, family)

    def refill(p: dict[str, Any], files) -> list[Any]:
        options = p.get("options") or {}
        style = (p.get("styles") or [{}])[0].get("image")
        knob_values = [options[name] if method == p["method"] and name in options else gr.update()
                       for method, names in KNOBS.items() for name in names]
        return [files(p.get("content")) if files else gr.update(), files(style) if files else gr.update(),
                p.get("prompt") or "", options.get("mode", "style"), options.get("reference_scale", 1.0),
                p["controls"]["strength"], *common_values(app, p), p["method"], *knob_values, *words_values(p)]

    app.refills.add("Style reference", {name for _, name in TECHNIQUES}.__contains__, form, refill)
    return [job]
