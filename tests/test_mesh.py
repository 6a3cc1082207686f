"""The mesh extension on meshes built here: icosphere, box, a two-mesh scene (random encoder, tiny views)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from extensions.mesh.atlas import build_atlas
from extensions.mesh.bake import seam_jump
from extensions.mesh.raster import cameras
from extensions.mesh.result import MeshResult
from extensions.mesh.schema import MeshStyleRequest
from extensions.mesh.surface import load_surface
from nstdiff.commands import main as cli_main
from nstdiff.errors import Cancelled, InputError
from nstdiff.executor import stylize
from nstdiff.losses import STYLE_LAYERS, GramStyleLoss, gram_matrix
from nstdiff.models.encoders import load_encoder
from nstdiff.settings import reload_settings
from tests.conftest import cancel_at, stripes

FAST = dict(views=4, view_size=48, texture_size=128, encoder="random", seed=0)
RED = np.array([230, 30, 20]) / 255


@pytest.fixture
def style(tmp_path) -> Path:
    path = tmp_path / "style.png"
    stripes(64, 64, (230, 30, 20), (120, 10, 10)).save(path)
    return path


@pytest.fixture
def sphere(tmp_path) -> Path:
    path = tmp_path / "sphere.glb"
    trimesh.creation.icosphere(2).export(path)  # 320 faces, no UVs, no colours
    return path


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    """One field-mode run on a grey sphere, shared by the tests that inspect its output."""
    folder = tmp_path_factory.mktemp("field")
    stripes(64, 64, (230, 30, 20), (120, 10, 10)).save(folder / "style.png")
    trimesh.creation.icosphere(2).export(folder / "sphere.glb")
    request = MeshStyleRequest(model=folder / "sphere.glb", style=folder / "style.png", steps=25, **FAST)
    return folder, stylize(request)


def rendered_views(path: Path, count: int = 4, size: int = 48) -> torch.Tensor:
    """(V, 3, H, W) views of a model file as a viewer shows its colours (texture or not), and their masks."""
    surface = load_surface(path, reload_settings())
    images, masks = [], []
    for camera in cameras(surface.vertices, count):
        fragments = camera.rasterize(surface.vertices, surface.faces, size)
        image = np.zeros((size, size, 3), np.float32)
        image[fragments.mask] = surface.colors(fragments.face[fragments.mask],
                                               fragments.bary[fragments.mask].astype(np.float64))[0]
        images.append(image)
        masks.append(fragments.mask)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.from_numpy(np.stack(masks)).float()


def style_loss(images: torch.Tensor, masks: torch.Tensor, style_path: Path) -> float:
    net = load_encoder("random", torch.device("cpu")).module
    style = torch.from_numpy(np.asarray(Image.open(style_path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        targets = {layer: [gram_matrix(f)] for layer, f in net(style, STYLE_LAYERS).items()}
        weights = {layer: 1.0 for layer in STYLE_LAYERS}
        features = net(images, STYLE_LAYERS)
        return float(sum(GramStyleLoss(targets, weights, masks[v][None])({l: f[v:v + 1] for l, f in features.items()})
                         for v in range(len(images))))


def test_rendered_views_move_toward_the_style(field_run, sphere, tmp_path):
    folder, result = field_run
    written = result.save(tmp_path / "out.glb")
    before_images, masks = rendered_views(sphere)
    after_images, after_masks = rendered_views(written)
    assert torch.equal(masks, after_masks)  # same geometry, same silhouettes
    before, after = style_loss(before_images, masks, folder / "style.png"), style_loss(after_images, masks,
                                                                                        folder / "style.png")
    assert after < 0.6 * before, (before, after)
    mean_before = before_images.permute(0, 2, 3, 1)[masks.bool()].mean(0).numpy()
    mean_after = after_images.permute(0, 2, 3, 1)[masks.bool()].mean(0).numpy()
    style_mean = np.asarray(Image.open(folder / "style.png"), np.float64).reshape(-1, 3).mean(0) / 255
    assert np.abs(mean_after - style_mean).sum() < 0.5 * np.abs(mean_before - style_mean).sum()
    assert result.measures["style_loss_end"] < result.measures["style_loss_start"]
    assert result.measures["coverage"] > 0.95  # 4 views see nearly all of a sphere


def test_exports_reload_pixel_identical(field_run, tmp_path):
    _, result = field_run
    texture = np.asarray(result.texture)
    glb = trimesh.load_scene(result.save(tmp_path / "m.glb"))
    (mesh,) = glb.geometry.values()
    assert np.array_equal(np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")), texture)
    assert MeshResult.read_metadata(tmp_path / "m.glb")["seed"] == 0
    obj = result.save(tmp_path / "m.obj")
    assert {p.name for p in tmp_path.iterdir()} >= {"m.obj", "m.mtl", "m.png"}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png").convert("RGB")), texture)
    reloaded = trimesh.load(obj, force="mesh")
    assert np.array_equal(np.asarray(reloaded.visual.material.image.convert("RGB")), texture)
    with zipfile.ZipFile(result.save(tmp_path / "bundle.zip")) as archive:
        assert set(archive.namelist()) == {"bundle.obj", "bundle.mtl", "bundle.png"}
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(archive.read("bundle.png"))).convert("RGB")), texture)
    ply = trimesh.load(result.save(tmp_path / "m.ply"), process=False)
    assert np.array_equal(ply.visual.vertex_colors, trimesh.Trimesh(*result.joined()[:2], process=False,
                          vertex_colors=np.asarray(ply.visual.vertex_colors)).visual.vertex_colors)
    assert ply.visual.vertex_colors[:, :3].std() > 5  # colours, not the default grey
    with pytest.raises(InputError, match=r"m\.fbx': .* written as \.glb, \.obj, \.zip, \.ply"):
        result.save(tmp_path / "m.fbx")


def test_seams_stay_small_in_field_mode_not_in_texture_mode(field_run, tmp_path):
    folder, result = field_run
    written = load_surface(result.save(tmp_path / "field.glb"), reload_settings())
    atlas = build_atlas(written, 128)
    assert not atlas.unwrapped  # the exported UVs are clean: reused as they are
    texture = np.asarray(result.texture, np.float32) / 255
    field_jump = seam_jump(written, atlas, texture)
    assert field_jump == pytest.approx(result.measures["seam_jump"], abs=0.5)
    baseline = stylize(MeshStyleRequest(model=folder / "sphere.glb", style=folder / "style.png", steps=25,
                                        mode="texture", **FAST))
    assert field_jump < 20 and baseline.measures["seam_jump"] > 2 * field_jump, (field_jump, baseline.measures)


def two_mesh_scene(path: Path) -> Path:
    """A box with vertex colours (content to keep) beside a plain sphere (none), in one GLB."""
    box = trimesh.creation.box((1, 1, 1))
    box.visual.vertex_colors = np.array([[40, 160, 60, 255]] * len(box.vertices))
    box.visual.vertex_colors[::2] = [30, 60, 200, 255]
    ball = trimesh.creation.icosphere(1, radius=0.6)
    scene = trimesh.Scene()
    scene.add_geometry(box, node_name="box", geom_name="box")
    scene.add_geometry(ball, node_name="ball", geom_name="ball", transform=trimesh.transformations.translation_matrix((1.5, 0, 0)))
    scene.export(path)
    return path


def test_a_two_mesh_scene_keeps_its_parts_and_its_own_colours_at_strength_zero(tmp_path, style):
    model = two_mesh_scene(tmp_path / "scene.glb")
    result = stylize(MeshStyleRequest(model=model, style=style, steps=15, strength=0.0, **FAST))
    scene = trimesh.load_scene(result.save(tmp_path / "out.glb"))
    assert sorted(scene.geometry) == ["ball", "box"]
    assert all(g.visual.uv is not None for g in scene.geometry.values())
    before, masks = rendered_views(model)
    after, _ = rendered_views(tmp_path / "out.glb")
    difference = (after - before).abs().permute(0, 2, 3, 1)[masks.bool()]
    original = load_surface(model, reload_settings())
    assert sorted((p.name, p.kind) for p in original.parts) == [("ball", "flat"), ("box", "vertex")]
    assert float(difference.mean()) * 255 < 12  # the box's colours survive; the grey ball stays near grey
    assert "unwrapped it with xatlas" in " ".join(result.notes)


def test_degenerate_and_non_manifold_faces_are_handled(tmp_path, style):
    mesh = trimesh.creation.icosphere(1)
    vertices = np.vstack([mesh.vertices, [[0, 0, 2]]])
    a, b = mesh.faces[0][:2]
    extra = [[a, b, len(vertices) - 1], [a, a, b], [0, 1, 1]]  # a third face on one edge, and two degenerate ones
    broken = trimesh.Trimesh(vertices, np.vstack([mesh.faces, extra]), process=False)
    path = tmp_path / "broken.ply"
    broken.export(path)
    result = stylize(MeshStyleRequest(model=path, style=style, steps=3, **FAST))
    assert any("degenerate" in note for note in result.notes)
    assert sum(len(f) for f in result.faces) == len(mesh.faces) + 1


def test_progress_is_reported_and_cancel_stops_the_run(sphere, style):
    token, on_progress, events = cancel_at(2)

    with pytest.raises(Cancelled, match="cancelled at step 2/50"):
        stylize(MeshStyleRequest(model=sphere, style=style, steps=50, **FAST), progress=on_progress, cancel=token)
    assert [e.step for e in events if e.stage == "optimise"] == [1, 2] and "style" in events[-1].losses


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def bad_models(tmp_path: Path) -> list[tuple[Path, str]]:
    glb = tmp_path / "good.glb"
    trimesh.creation.icosphere(1).export(glb)
    points = tmp_path / "points.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((20, 3))).export(points)
    return [
        (tmp_path / "missing.glb", "does not exist"),
        (write(tmp_path / "model.fbx", b"x"), "unsupported type '.fbx'"),
        (write(tmp_path / "empty.obj", b""), "is empty"),
        (write(tmp_path / "noise.glb", np.random.default_rng(1).bytes(400)), "could not be read as GLB"),
        (write(tmp_path / "cut.glb", glb.read_bytes()[:200]), "could not be read as GLB"),
        (write(tmp_path / "noise.stl", np.random.default_rng(2).bytes(333)), "could not be read as STL"),
        (write(tmp_path / "bad.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n"),
         "could not be read as PLY"),
        (write(tmp_path / "text.obj", "hello, I am not a mesh\n"), "could not be read as OBJ"),
        (points, "no triangles"),
        (write(tmp_path / "nan.obj", "v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n"), "non-finite coordinates"),
        (write(tmp_path / "flat.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n"), "only degenerate"),
    ]


def test_every_bad_model_gets_its_own_error(tmp_path, style):
    for path, message in bad_models(tmp_path):
        with pytest.raises(InputError, match=message):
            stylize(MeshStyleRequest(model=path, style=style, steps=1, **FAST))


def test_size_limits_have_clear_messages(tmp_path, style, sphere, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MAX_MESH_FACES", "100")
    reload_settings()
    with pytest.raises(InputError, match="320 triangles, over the limit of 100.*NSTDIFF_MAX_MESH_FACES"):
        stylize(MeshStyleRequest(model=sphere, style=style, steps=1, **FAST))
    monkeypatch.setenv("NSTDIFF_MAX_INPUT_BYTES", "1000")
    reload_settings()
    with pytest.raises(InputError, match="MiB, over the limit.*NSTDIFF_MAX_INPUT_BYTES"):
        stylize(MeshStyleRequest(model=sphere, style=style, steps=1, **FAST))
    monkeypatch.delenv("NSTDIFF_MAX_INPUT_BYTES")
    reload_settings()
    with pytest.raises(InputError, match="style image .* not a readable image"):
        stylize(MeshStyleRequest(model=sphere, style=write(tmp_path / "s.png", b"nope"), steps=1, **FAST))


def test_cli_writes_a_textured_obj_and_refuses_a_bad_suffix(sphere, style, tmp_path, capsys):
    args = ["mesh", str(sphere), "--style", str(style), "--views", "2", "--view-size", "32", "--steps", "2",
            "--texture-size", "64", "--encoder", "random", "--seed", "4", "--quiet"]
    assert cli_main([*args, "-o", str(tmp_path / "out.obj")]) == 0
    assert "wrote" in capsys.readouterr().out
    mesh = trimesh.load(tmp_path / "out.obj", force="mesh")
    assert mesh.visual.material.image.size == (64, 64)
    assert cli_main([*args, "-o", str(tmp_path / "out.fbx")]) == 2
    assert "written as .glb, .obj, .zip, .ply" in capsys.readouterr().err


@pytest.mark.slow
def test_real_vgg16_moves_the_views_toward_the_style(sphere, style, vgg16_models_dir, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MODELS_DIR", str(vgg16_models_dir))
    reload_settings()
    result = stylize(MeshStyleRequest(model=sphere, style=style, views=4, view_size=64, steps=20, texture_size=128,
                                      encoder="vgg16", seed=0))
    assert result.encoder == "vgg16"
    assert result.measures["style_loss_end"] < 0.5 * result.measures["style_loss_start"]
    assert result.measures["seam_jump"] < 20


def test_non_finite_or_huge_vertices_are_refused_not_dropped_and_nothing_else_is_printed(tmp_path, recwarn):
    # one NaN vertex among four faces: loading with trimesh's processing dropped its face and went on with three
    quad = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\n{extra}f 1 2 3\nf 2 4 3\nf 1 2 4\nf 1 3 5\n"
    cases = [("nan.obj", quad.format(extra="v nan 1 1\n"), r"'nan\.obj' has vertices with non-finite coordinates"),
             ("inf.obj", quad.format(extra="v 0 inf 1\n"), "non-finite coordinates"),
             ("huge.obj", quad.format(extra="v 1e300 0 1\n"), r"coordinates beyond ±1e\+15")]
    for name, text, message in cases:
        with pytest.raises(InputError, match=message):
            load_surface(write(tmp_path / name, text), reload_settings())
    assert [str(w.message) for w in recwarn] == []  # numpy's overflow warnings no longer print before our message
