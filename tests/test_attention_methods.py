"""StyleID and StyleAligned on the tiny SD 1.5 stand-in, through `stylize` and the product's loaders (CPU, 64 px,
4 DDIM steps): their processors sit on exactly the layers asked for and leave the shared UNet as it was, the style
image and the knobs change the result, runs repeat per seed, progress and cancel work per step."""
from __future__ import annotations

import pytest
import torch

from nstdiff import ImageStyleRequest, stylize
from nstdiff.diffusion.attention import (
    InjectionState,
    SharedAttentionProcessor,
    StyleIDProcessor,
    installed,
    self_attention_layers,
)
from nstdiff.diffusion.pipelines import PIPELINES
from nstdiff.errors import Cancelled, InputError
from nstdiff.settings import reload_settings
from tests.conftest import cancel_at

torch.set_num_threads(1)  # two threads on a busy 2-core machine spin-wait (a tiny run took 15 s instead of 1)
STEPS = 4


def request(images, method="diffusion-styleid", style="red", **options) -> ImageStyleRequest:
    return ImageStyleRequest(method=method, content=images["content"], styles=[images[style]], size=64, steps=STEPS,
                             seed=1, options=options)


def run(images, method="diffusion-styleid", style="red", **options) -> bytes:
    return stylize(request(images, method, style, **options)).image.tobytes()


def unet():
    # the one the last run used (an earlier test module in this process may have loaded another "sd15" folder)
    return [m for m in PIPELINES.loaded() if m.label == "sd15"][-1].pipeline.unet


def plain(images) -> bytes:
    return stylize(ImageStyleRequest(method="diffusion-text", content=images["content"], prompt="ink", size=64,
                                     steps=STEPS, seed=1)).image.tobytes()


@pytest.mark.parametrize("method, count, decoder_only", [("diffusion-styleid", 2, True),
                                                         ("diffusion-stylealigned", 4, False)])
def test_processors_sit_on_exactly_the_layers_asked_and_the_unet_is_restored(models, images, method, count,
                                                                             decoder_only):
    before_image = plain(images)
    before = unet().attn_processors
    seen = []

    def look(event) -> None:
        if event.stage == "denoise" and event.step == 1:
            seen.append(unet().attn_processors)

    stylize(request(images, method, injection_layers=count), progress=look)
    during = seen[0]
    wanted = self_attention_layers(unet(), decoder_only)[-count:]
    kind = StyleIDProcessor if decoder_only else SharedAttentionProcessor
    assert sorted(name for name, p in during.items() if isinstance(p, kind)) == sorted(wanted)
    assert all(during[name] is p for name, p in before.items() if name not in wanted)  # the rest untouched
    after = unet().attn_processors
    assert all(after[name] is p for name, p in before.items())  # the very same processor objects
    assert plain(images) == before_image  # a plain run after is bit-identical to one before


def test_attention_slicing_stays_on_the_other_layers_and_comes_back(models, images, monkeypatch):
    from diffusers.models.attention_processor import SlicedAttnProcessor

    monkeypatch.setenv("NSTDIFF_ATTENTION_SLICING", "1")
    reload_settings()
    seen = []
    stylize(request(images, injection_layers=2),
            progress=lambda event: seen.append(unet().attn_processors) if event.stage == "denoise" else None)
    wanted = self_attention_layers(unet(), decoder_only=True)[-2:]
    during = seen[0]
    assert all(isinstance(p, StyleIDProcessor if name in wanted else SlicedAttnProcessor)
               for name, p in during.items())
    after = unet().attn_processors
    assert all(after[name] is p for name, p in during.items() if name not in wanted)
    assert all(isinstance(after[name], SlicedAttnProcessor) for name in wanted)


@pytest.mark.parametrize("method", ["diffusion-styleid", "diffusion-stylealigned"])
def test_the_result_follows_the_style_image_and_repeats_per_seed(models, images, method):
    red = run(images, method)
    assert run(images, method) == red
    assert run(images, method, style="blue") != red
    assert run(images, method, injection_steps=0.0) != red  # the injected attention acted


def test_styleid_knobs_change_the_result(models, images):
    base = run(images)
    assert run(images, gamma=0.0) != base
    assert run(images, temperature=1.0) != base
    assert run(images, initial_adain=False) != base


def test_stylealigned_makes_a_new_image_from_noise_per_seed(models, images):
    def new(seed: int, **options) -> bytes:
        return stylize(ImageStyleRequest(method="diffusion-stylealigned", styles=[images["red"]], prompt="a house",
                                         size=64, steps=STEPS, seed=seed, options=options)).image.tobytes()

    first = new(1)
    assert new(1) == first and new(2) != first
    assert new(1, temperature=2.0) != first


def test_both_run_on_the_sdxl_family(models, images):
    for method in ("diffusion-styleid", "diffusion-stylealigned"):
        assert run(images, method, model="sdxl") != run(images, method, style="blue", model="sdxl")


def test_progress_per_step_and_cancel_restore_the_processors(models, images):
    events = []
    stylize(request(images), progress=events.append)
    stages = [(e.stage, e.step) for e in events if e.stage in ("invert style", "invert photo", "denoise")]
    assert stages == [(stage, step) for stage in ("invert style", "invert photo", "denoise")
                      for step in range(1, STEPS + 1)]

    before = unet().attn_processors
    for method in ("diffusion-styleid", "diffusion-stylealigned"):
        cancel, on_progress, seen = cancel_at(2, "denoise")
        with pytest.raises(Cancelled):
            stylize(request(images, method), progress=on_progress, cancel=cancel)
        assert (seen[-1].stage, seen[-1].step) == ("denoise", 2)
        assert all(unet().attn_processors[name] is p for name, p in before.items())


def test_a_run_that_raises_restores_the_processors(models, images):
    plain(images)
    before = unet().attn_processors

    def broken(event) -> None:
        if event.stage == "invert photo":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        stylize(request(images), progress=broken)
    assert all(unet().attn_processors[name] is p for name, p in before.items())


def test_inversion_records_every_injected_timestep_of_the_denoising(models):
    from diffusers import AutoPipelineForText2Image, DDIMScheduler
    from PIL import Image

    from nstdiff.diffusion.inversion import encode, invert

    model = PIPELINES.get("sd15", torch.device("cpu"), reload_settings(), print)
    pipe = AutoPipelineForText2Image.from_pipe(model.pipeline)
    pipe.scheduler = DDIMScheduler.from_config(model.pipeline.scheduler.config)
    pipe.scheduler.set_timesteps(STEPS)
    timesteps = {int(t) for t in pipe.scheduler.timesteps}
    state = InjectionState(mode="record-style", injected=timesteps)
    layers = self_attention_layers(pipe.unet, decoder_only=True)
    with installed(pipe.unet, {name: StyleIDProcessor(name, state, 0.75, 1.5) for name in layers}, state):
        trajectory = invert(pipe, encode(pipe, Image.new("RGB", (64, 64), (200, 40, 30))), STEPS, "")
        assert set(state.cache) == {(name, t) for name in layers for t in timesteps}
        assert all(set(entry) == {"key", "value"} for entry in state.cache.values())
    assert len(trajectory) == STEPS + 1 and not state.cache  # the cache goes with the processors
    nowhere = {"nowhere.attn1.processor": StyleIDProcessor("x", state, 0, 1)}
    with pytest.raises(ValueError, match="has no attention layers"), installed(pipe.unet, nowhere, state):
        pass


@pytest.mark.parametrize("method, change, message", [
    ("diffusion-styleid", {"content": None}, "add a content image"),
    ("diffusion-styleid", {"styles": ["red", "blue"]}, "takes one style image"),
    ("diffusion-stylealigned", {"options": {"structure": "canny"}}, "set structure to none"),
    ("diffusion-stylealigned", {"options": {"fast": True}}, "turn fast mode off"),
    ("diffusion-styleid", {"options": {"gamma": 2}}, "gamma: Input should be less than or equal to 1"),
])
def test_requests_they_cannot_honour_are_refused_up_front(images, method, change, message):
    fields = {"method": method, "content": images["content"], "styles": [images["red"]], "size": 64, "steps": STEPS}
    fields.update({key: [images[s] for s in value] if key == "styles" else value for key, value in change.items()})
    with pytest.raises(InputError, match=message):  # no models folder here: refused before anything is looked for
        stylize(ImageStyleRequest(**fields))


def test_strength_is_not_used_and_never_lengthens_the_schedule(models, images):
    result = stylize(ImageStyleRequest(method="diffusion-styleid", content=images["content"], styles=[images["red"]],
                                       size=64, steps=STEPS, seed=1, controls={"strength": 0.1}))
    assert f"{STEPS} steps" in " ".join(result.notes) and "strength is not used" in " ".join(result.notes)
