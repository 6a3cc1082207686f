"""The app's 3D tab through its real HTTP API (gradio_client): upload, textured GLB back, history, errors."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from gradio_client import Client, handle_file

from nstdiff.settings import Settings
from tests.conftest import stripes
from tests.servers import RunningServer


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory) -> Settings:
    return Settings(outputs_dir=tmp_path_factory.mktemp("outputs"), cache_dir=tmp_path_factory.mktemp("cache"),
                    device="cpu", allow_downloads=False, default_encoder="random")


@pytest.fixture(scope="module")
def client(app_settings):
    server = RunningServer(app_settings)
    yield Client(server.url, verbose=False)
    server.stop()


def mesh_args(model, style, **extra):
    args = dict(files=[handle_file(str(model))], style=handle_file(str(style)), mode="field", views=2, view_size=32,
                steps=2, texture_size=64, strength=0.7, seed=5, encoder="random")
    return {**args, **extra}


def test_an_obj_upload_comes_back_as_a_textured_glb_and_joins_the_history(client, tmp_path):
    model, style = tmp_path / "box.obj", tmp_path / "style.png"
    trimesh.creation.box().export(model)
    stripes(32, 32).save(style)
    before = len(client.predict(api_name="/history"))
    glb, downloads, info = client.predict(**mesh_args(model, style), api_name="/mesh")
    scene = trimesh.load_scene(glb)
    (mesh,) = scene.geometry.values()
    texture = np.asarray(mesh.visual.material.baseColorTexture)
    assert texture.shape[:2] == (64, 64) and texture.std() > 1
    assert sorted(p.rsplit(".", 1)[-1] for p in (d["path"] if isinstance(d, dict) else d for d in downloads)) == \
        ["glb", "ply", "zip"]
    assert "seed **5**" in info and "seam jump" in info
    history = client.predict(api_name="/history")
    assert len(history) == before + 1 and "mesh · random · seed 5" in history[0]["caption"]


def test_a_malformed_upload_gets_its_error(client, tmp_path):
    broken, style = tmp_path / "broken.glb", tmp_path / "style.png"
    broken.write_bytes(b"glTF this is not a model")
    stripes(32, 32).save(style)
    with pytest.raises(Exception, match="could not be read as GLB"):
        client.predict(**mesh_args(broken, style), api_name="/mesh")
    with pytest.raises(Exception, match="upload exactly one 3D model"):
        client.predict(**mesh_args(style, style), api_name="/mesh")
