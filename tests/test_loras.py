"""The LoRA library and LoRAs in use: blend, weight 0, switching without reloading, kohya export and import, bad
files. Tiny random LoRAs stand in for trained ones (training itself: test_lora_training.py)."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from nstdiff import ImageStyleRequest, stylize
from nstdiff.errors import InputError, ModelFileError
from nstdiff.kohya import export_kohya
from nstdiff.loras import delete_lora, get_lora, import_lora, list_loras, rename_lora
from nstdiff.settings import reload_settings
from tests.conftest import stripes
from tests.tiny_diffusion import build_tiny_lora, build_tiny_sd, build_tiny_sdxl


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lora-models")
    build_tiny_sd(root / "diffusion" / "sd15")
    build_tiny_sdxl(root / "diffusion" / "sdxl")
    return root


@pytest.fixture
def library(tiny_bases, tmp_path, monkeypatch) -> Path:
    """A models folder with the tiny bases and two LoRAs, `ink` and `neon`, in the library's layout."""
    models = tmp_path / "models"
    shutil.copytree(tiny_bases, models)
    for name, seed in (("ink", 1), ("neon", 2)):
        folder = build_tiny_lora(models / "loras" / name, models / "diffusion" / "sd15", seed=seed,
                                 weight_name=f"{name}.safetensors")
        (folder / "lora.json").write_text(json.dumps({"name": name, "base": "sd15", "trigger": f"<{name}>",
                                                      "rank": 4, "steps": 10, "dataset_size": 4,
                                                      "created": f"2026-11-30T0{seed}:00:00"}))
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(models))
    reload_settings()
    return models


def generate(loras=(), seed=0) -> bytes:
    request = ImageStyleRequest(method="diffusion-text", prompt="a lighthouse", size=64, steps=3, seed=seed,
                                options={"loras": list(loras)})
    return stylize(request).image.tobytes()


def test_the_library_lists_renames_deletes_and_indexes(library, isolated_settings):
    from nstdiff.store import Store

    infos = list_loras()
    assert [i.name for i in infos] == ["neon", "ink"]  # newest first
    assert infos[1].trigger == "<ink>" and infos[1].cross_attention_dim == 32
    assert {row["name"] for row in Store(isolated_settings.outputs_dir).indexed_loras()} == {"ink", "neon"}
    rename_lora("ink", "ink-wash")
    assert get_lora("ink-wash").file.name == "ink-wash.safetensors"
    with pytest.raises(InputError, match="no LoRA named 'inkwash'; did you mean ink-wash"):
        get_lora("inkwash")
    with pytest.raises(InputError, match="no LoRA named 'ink'; the library has neon, ink-wash"):
        get_lora("ink")
    with pytest.raises(InputError, match="'Bad Name' is not a usable LoRA name"):
        rename_lora("neon", "Bad Name")
    delete_lora("neon")
    assert [i.name for i in list_loras()] == ["ink-wash"]


def test_a_lora_changes_the_output_two_blend_and_weight_zero_is_the_base(library):
    from nstdiff.diffusion.pipelines import PIPELINES

    base = generate()
    pipeline = next(iter(PIPELINES._models.values())).pipeline
    ink, neon = generate(["ink:1"]), generate(["neon:1"])
    blend = generate(["ink:0.5", "neon:0.5"])
    assert base != ink and ink != neon and blend not in (ink, neon)
    assert generate(["ink:0"]) == base
    assert generate() == base  # no LoRA asked for: all adapters off again
    assert next(iter(PIPELINES._models.values())).pipeline is pipeline  # switching never reloaded the base


def test_kohya_export_reimports_to_the_same_weights(library, tmp_path):
    from safetensors import safe_open

    exported = export_kohya("ink", tmp_path / "ink_kohya.safetensors")
    with safe_open(str(exported), framework="numpy") as handle:
        keys = list(handle.keys())
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert any(k.endswith(".lora_down.weight") for k in keys) and any(k.endswith(".alpha") for k in keys)
    import_lora(exported, "ink-again", base="sd15", trigger="<ink>")
    assert generate(["ink-again:1"]) == generate(["ink:1"])


def test_bad_imports_are_refused_with_the_reason(library, tmp_path):
    evil = tmp_path / "style.ckpt"
    evil.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="pickle checkpoint, which can run code"):
        import_lora(evil, "evil", base="sd15")
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        import_lora(corrupt, "broken", base="sd15")
    xl_lora = build_tiny_lora(tmp_path / "xl", library / "diffusion" / "sdxl")
    with pytest.raises(InputError, match="cross-attention width 64, but sd15 has 32"):
        import_lora(xl_lora / "pytorch_lora_weights.safetensors", "xl", base="sd15")
    assert {i.name for i in list_loras()} == {"ink", "neon"}  # nothing half-imported


def test_a_lora_for_another_base_is_refused_at_use(library, tmp_path):
    folder = library / "loras" / "xl"
    build_tiny_lora(folder, library / "diffusion" / "sdxl", weight_name="xl.safetensors")
    with pytest.raises(InputError, match="LoRA 'xl' was made for .* width 64.*sd15 has 32"):
        generate(["xl:1"])
    with pytest.raises(InputError, match="no LoRA named 'nope'"):
        generate(["nope"])


def test_my_styles_in_the_text_style_tab(library, images, tmp_path):
    from gradio_client import Client

    from nstdiff.settings import get_settings
    from tests.servers import RunningServer

    server = RunningServer(get_settings())
    try:
        client = Client(server.url, verbose=False)
        common = dict(content=None, prompt="a lighthouse", preset="none", negative="", strength=0.8,
                      structure="none", family="sd15", fast=False, size=64, steps=3, seed=0)
        plain = Path(client.predict(**common, api_name="/text_style")[0]).read_bytes()
        styled, info = client.predict(**common, lora_1="ink", weight_1=1.0, api_name="/text_style")
        assert Path(styled).read_bytes() != plain
        with pytest.raises(Exception, match="no LoRA named 'inx'"):
            client.predict(**common, lora_1="inx", api_name="/text_style")
    finally:
        server.stop()


def test_the_lora_commands(library, tmp_path, capsys):
    from nstdiff.commands import main

    assert main(["lora", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ink" in listing and "<ink>" in listing and "neon" in listing
    assert main(["lora", "export", "ink", str(tmp_path / "ink_kohya.safetensors")]) == 0
    assert main(["lora", "import", str(tmp_path / "ink_kohya.safetensors"), "--name", "ink-copy", "--base", "sd15"]) == 0
    assert main(["lora", "rename", "ink-copy", "ink-two"]) == 0 and main(["lora", "delete", "neon"]) == 0
    out = tmp_path / "styled.png"
    assert main(["texture", "--prompt", "a lighthouse", "--method", "diffusion-text", "--lora", "ink-two:0.7",
                 "--size", "64", "--steps", "3", "--seed", "0", "-o", str(out)]) == 0
    assert json.loads(Image.open(out).text["nstdiff"])["parameters"]["options"]["loras"] == [
        {"name": "ink-two", "weight": 0.7}]
    assert main(["lora", "import", str(tmp_path / "ink_kohya.safetensors"), "--name", "Bad Name"]) == 2
    assert "not a usable LoRA name" in capsys.readouterr().err


def test_a_lora_with_foreign_header_metadata_is_imported_and_listed(library, tmp_path):
    from safetensors.torch import load_file, save_file

    source = library / "loras" / "ink" / "ink.safetensors"
    foreign = tmp_path / "foreign.safetensors"
    save_file(load_file(str(source)), str(foreign), metadata={"rank": "8 (conv 4)", "steps": "many"})
    import_lora(foreign, "foreign", base="sd15")
    assert {i.name for i in list_loras()} == {"ink", "neon", "foreign"}


def test_the_train_form_refuses_a_path_as_name_before_touching_files(library, tmp_path):
    from gradio_client import Client, handle_file

    from nstdiff.settings import get_settings
    from tests.servers import RunningServer

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    server = RunningServer(get_settings())
    try:
        client = Client(server.url, verbose=False)
        stripes(16, 16).save(tmp_path / "art.png")
        upload = handle_file(str(tmp_path / "art.png"))
        for name in (str(victim), "../../victim"):
            with pytest.raises(Exception, match="not a usable LoRA name"):
                client.predict(files=[upload], name=name, trigger="", base="sd15", steps=2, rank=4, resolution=32,
                               captions="none", api_name="/lora_train")
    finally:
        server.stop()
    assert (victim / "precious.txt").read_text() == "keep me"


def test_a_trigger_starting_with_a_dash_reaches_the_training_process_intact(tmp_path):
    from nstdiff.commands import build_parser
    from nstdiff.training.background import command_line
    from nstdiff.training.lora_data import LoraTraining

    argv = command_line(LoraTraining(images=tmp_path, name="ink", trigger="-ink-"))
    assert build_parser().parse_args(argv[3:]).trigger == "-ink-"


KEY = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"


def save_lora(path: Path, down_shape=(4, 768), up_shape=(320, 4), dtype=None, fill=0.01) -> Path:
    """A one-layer peft LoRA on an SD 1.5-width attn2 key projection, shapes and dtype as given."""
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.float32
    save_file({f"{KEY}.lora_A.weight": torch.full(down_shape, fill).to(dtype),
               f"{KEY}.lora_B.weight": torch.full(up_shape, fill).to(dtype)}, str(path))
    return path


@pytest.mark.parametrize("shapes, dtype, fill, reason", [
    (((4,), (320, 4)), None, 0.01, r"shapes \[4\] and \[320, 4\]; a LoRA layer is two matrices"),
    (((4, 768), (320, 8)), None, 0.01, "rank 4 in lora_A but 8 in lora_B"),
    (((4, 768), (320, 4)), "int32", 1, "holds I32 values, not floating point"),
    (((4, 768), (320, 4)), None, float("nan"), "NaN or infinite weights"),
])
def test_a_damaged_lora_file_is_refused_before_anything_is_copied(tmp_path, shapes, dtype, fill, reason):
    import torch

    file = save_lora(tmp_path / "style.safetensors", *shapes, getattr(torch, dtype) if dtype else None, fill)
    with pytest.raises(ModelFileError, match=f"'style.safetensors' .*{reason}"):
        import_lora(file, "style", base="sd15")
    assert list_loras(include_damaged=True) == [] and not (reload_settings().models_path / "loras" / "style").exists()


def test_damaged_library_entries_are_listed_and_can_be_cleaned_up(tmp_path, capsys):
    from nstdiff.commands import main

    import_lora(save_lora(tmp_path / "good.safetensors"), "good", base="sd15")
    broken = reload_settings().models_path / "loras" / "broken"
    broken.mkdir()
    save_lora(broken / "broken.safetensors", down_shape=(4,))
    odd = reload_settings().models_path / "loras" / "odd"
    shutil.copytree(reload_settings().models_path / "loras" / "good", odd)
    (odd / "good.safetensors").rename(odd / "odd.safetensors")
    (odd / "lora.json").write_text("[1, 2]")
    assert [i.name for i in list_loras()] == ["good"]
    damaged = {i.name: i.damaged for i in list_loras(include_damaged=True) if i.damaged}
    assert set(damaged) == {"broken", "odd"} and "a LoRA layer is two matrices" in damaged["broken"]
    assert main(["lora", "list"]) == 0
    listing = capsys.readouterr().out
    assert "broken                   DAMAGED: 'broken.safetensors' is damaged" in listing and "odd" in listing
    assert main(["lora", "export", "broken", str(tmp_path / "b.safetensors")]) == 2
    assert "LoRA 'broken' cannot be used: 'broken.safetensors' is damaged" in capsys.readouterr().err
    assert not (tmp_path / "b.safetensors").exists()
    assert main(["lora", "import", str(tmp_path / "good.safetensors"), "--name", "again", "--base", "sd15"]) == 0
    assert main(["lora", "rename", "broken", "broken-old"]) == 0 and main(["lora", "delete", "odd"]) == 0
    assert main(["lora", "delete", "broken-old"]) == 0
    assert sorted(i.name for i in list_loras(include_damaged=True)) == ["again", "good"]


def test_export_checks_its_destination_first(tmp_path, capsys):
    from nstdiff.commands import main

    import_lora(save_lora(tmp_path / "good.safetensors"), "good", base="sd15")
    for destination, message in ((tmp_path / "missing" / "x.safetensors", "folder '.*missing' does not exist"),
                                 (tmp_path, "is a folder"), (tmp_path / "x.bin", r"written as \.safetensors")):
        with pytest.raises(InputError, match=message):
            export_kohya("good", destination)
    assert main(["lora", "export", "good", str(tmp_path / "missing" / "x.safetensors")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    from safetensors import safe_open

    with safe_open(str(export_kohya("good", tmp_path / "good_kohya.safetensors")), framework="numpy") as handle:
        assert handle.keys() and all(key.startswith("lora_unet_") for key in handle.keys())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no part file left behind


def test_a_missing_lora_is_reported_before_the_model_loads(monkeypatch):
    from nstdiff.diffusion.pipelines import PIPELINES

    def no_loading(*args, **kwargs):
        raise AssertionError("the diffusion model was loaded before the LoRA names were checked")

    monkeypatch.setattr(PIPELINES, "get", no_loading)
    request = ImageStyleRequest(method="diffusion-text", prompt="a lighthouse", size=64, steps=1,
                                options={"loras": ["nope:0.5"]})
    with pytest.raises(InputError, match="no LoRA named 'nope'; the library is empty"):
        stylize(request)


def test_kohya_export_keeps_alpha_and_names_the_base_as_kohya_does(library, tmp_path):
    """diffusers keeps alpha in flat header keys (`unet.lora_alpha`); A1111 scales by alpha/dim and shows a LoRA only
    for the base its `ss_base_model_version` names (an `sdxl_` prefix is SDXL, anything else SD 1/2)."""
    from safetensors import safe_open

    models = library
    build_tiny_lora(models / "loras" / "bold", models / "diffusion" / "sd15", seed=5, weight_name="bold.safetensors",
                    alpha=8)
    wide = build_tiny_lora(models / "loras" / "wide", models / "diffusion" / "sdxl", seed=6,
                           weight_name="wide.safetensors")
    (wide / "lora.json").write_text(json.dumps({"name": "wide", "base": "sdxl"}))
    exported = export_kohya("bold", tmp_path / "bold_kohya.safetensors")
    with safe_open(str(exported), framework="pt") as handle:
        metadata = handle.metadata()
        alphas = [handle.get_tensor(k) for k in handle.keys() if k.endswith(".alpha")]
    assert alphas and all(a.dtype == torch.float32 and float(a) == 8.0 for a in alphas)
    assert metadata["ss_network_alpha"] == "8.0" and metadata["ss_network_dim"] == "4"
    assert metadata["ss_base_model_version"] == "sd_v1" and metadata["ss_v2"] == "False"
    import_lora(exported, "bold-again", base="sd15")
    assert generate(["bold-again:1"]) == generate(["bold:1"])  # the same strength after the round trip
    with safe_open(str(export_kohya("wide", tmp_path / "wide.safetensors")), framework="pt") as handle:
        assert handle.metadata()["ss_base_model_version"] == "sdxl_base_v1-0"
