"""Attacks on the running app over HTTP: server paths in file fields, the file routes, error messages, logins."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
import re
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.conftest import gradient, stripes
from tests.security.conftest import ServerProcess

FILE_TYPES = {"file", "image", "audio", "model3d", "video", "gallery", "imageeditor"}


def file_field(kind: str, props: dict, payload: dict):
    """`payload` (a FileData naming a server path) in the shape the component `kind` takes."""
    if kind == "imageeditor":
        return {"background": payload, "layers": [], "composite": payload, "id": None}
    if kind == "gallery":
        return [{"image": payload, "caption": None}]
    return [payload] if props.get("file_count") in ("multiple", "directory") else payload


def call_event(server: ServerProcess, fn_index: int, data: list, queued: bool) -> dict:
    """Call one event the way the browser does (raw, no gradio_client); returns the final message."""
    session = uuid.uuid4().hex[:11]
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    if not queued:
        response = httpx.post(server.url + "gradio_api/run/predict", json=body, timeout=60)
        return {"status": response.status_code, **response.json()}
    assert httpx.post(server.url + "gradio_api/queue/join", json=body, timeout=30).status_code == 200
    with httpx.stream("GET", server.url + "gradio_api/queue/data", params={"session_hash": session},
                      timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message["output"] | {"success": message.get("success")}
    raise AssertionError("the event never completed")


def file_events(server: ServerProcess) -> list[tuple[int, dict, list]]:
    """Every event of the app that takes a file, with the app's own default values for its other inputs."""
    config = httpx.get(server.url + "config").json()
    components = {c["id"]: c for c in config["components"]}
    events = []
    for index, dependency in enumerate(config["dependencies"]):
        inputs = [components[i] for i in dependency["inputs"]]
        if any(c["type"] in FILE_TYPES for c in inputs):
            events.append((index, dependency, inputs))
    return events


@pytest.fixture(scope="module")
def secrets(app_server) -> dict[str, Path]:
    """Files on the server that no caller uploaded: a photo, and a text file behind a symlink named .png."""
    folder = app_server.root / "secret"
    folder.mkdir()
    photo, text = folder / "photo.png", folder / "passwords.txt"
    gradient(40, 32).save(photo)
    text.write_text(f"root:{uuid.uuid4().hex}\n")
    (folder / "link.png").symlink_to(text)
    return {"photo": photo, "symlink": folder / "link.png", "traversal": app_server.uploads / ".." / "secret" /
            "photo.png", "text": text}


@pytest.fixture(scope="module")
def past_job(app_server, tmp_path_factory) -> Path:
    """One real job through the API, so the outputs folder holds a result, kept inputs and the history database."""
    folder = tmp_path_factory.mktemp("job")
    content, style = folder / "holiday.png", folder / "style.png"
    gradient(48, 40).save(content)
    stripes(48, 48).save(style)
    client = Client(app_server.url, verbose=False)
    result, _ = client.predict(content=handle_file(str(content)), styles=[handle_file(str(style))], weights="",
                               method="gram", strength=0.8, preserve_color="none", style_scale=1.0, size=32, steps=2,
                               seed=1, encoder="random", mask_file=None, mask_paint=None, api_name="/stylize")
    return Path(result)


@pytest.mark.parametrize("secret", ["photo", "symlink", "traversal"])
def test_no_event_reads_a_server_file_named_in_a_file_field(app_server, secrets, secret):
    events = file_events(app_server)
    assert {d.get("api_name") for _, d, _ in events} >= {"stylize", "texture", "text_style", "style_reference",
                                                         "audio", "mesh", "video", "lora_train", "lora_import"}
    payload = {"path": str(secrets[secret]), "orig_name": "photo.png", "meta": {"_type": "gradio.FileData"}}
    for index, dependency, inputs in events:
        data = [file_field(c["type"], c.get("props", {}), payload) if c["type"] in FILE_TYPES
                else c.get("props", {}).get("value") for c in inputs]
        output = call_event(app_server, index, data, queued=dependency.get("queue") is not False)
        error = output.get("error") or ""
        assert "not uploaded to this server" in error, (dependency.get("api_name"), output)
        assert "/" not in error.replace("gradio_client's", "")
    # nothing was copied into Gradio's cache, where the file route would serve it
    secret_bytes = {secrets["photo"].read_bytes(), secrets["text"].read_bytes()}
    copied = [p for p in app_server.uploads.rglob("*") if p.is_file() and p.read_bytes() in secret_bytes]
    assert copied == []


def file_route_spellings(path: Path) -> list[str]:
    text = str(path)
    return [text, urllib.parse.quote(text, safe=""), urllib.parse.quote(urllib.parse.quote(text, safe=""), safe=""),
            text.replace("/", "//"), text.replace("/", "/./")]


def test_the_file_routes_serve_results_only(app_server, past_job):
    outputs = app_server.outputs
    result = next((outputs / "results").glob("*.png"))
    kept_inputs = list((outputs / "inputs").iterdir())
    assert kept_inputs, "the job kept its inputs"
    planted = [outputs / "lora-exports" / "ink_kohya.safetensors", outputs / "lora-datasets" / "ink" / "art.png",
               app_server.root / "cache" / "models" / "vgg16" / "vgg16.safetensors", outputs / "logs" / "nstdiff.log"]
    for file in planted[:-1]:  # files of the kinds that live there (the log is the server's own)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"root: not for callers")
    forbidden = [outputs / "history.sqlite", *kept_inputs, outputs / "results" / ".." / "history.sqlite", *planted,
                 Path("/etc/passwd"), Path("/proc/self/environ"), app_server.root / "server.log",
                 app_server.root / "secret" / "photo.png"]
    assert all(path.is_file() for path in forbidden), "each probe names a real file"
    assert httpx.get(app_server.url + "gradio_api/file=" + str(result)).status_code == 200  # results are served
    for route in ("gradio_api/file=", "file="):
        for path in forbidden:
            for spelling in file_route_spellings(path):
                response = httpx.get(app_server.url + route + spelling)
                assert response.status_code in (403, 404), (route, spelling, response.status_code)
                assert b"CREATE TABLE" not in response.content and b"root:" not in response.content


def test_error_messages_name_files_without_server_folders(app_server, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    client = Client(app_server.url, verbose=False)
    with pytest.raises(Exception) as failure:
        client.predict(content=handle_file(str(broken)), styles=[handle_file(str(broken))], weights="",
                       method="gram", strength=0.8, preserve_color="none", style_scale=1.0, size=32, steps=2,
                       seed=1, encoder="random", mask_file=None, mask_paint=None, api_name="/stylize")
    message = str(failure.value)
    assert "broken.png" in message and "not a readable image" in message
    assert str(app_server.root) not in message and "/uploads/" not in message and "/tmp" not in message


def test_each_job_leaves_one_log_line_and_the_log_is_not_served(app_server, past_job):
    log = app_server.outputs / "logs" / "nstdiff.log"
    entry_id = next((app_server.outputs / "results").glob("*.png")).stem
    assert re.search(rf"job {entry_id} method=gram seconds=[0-9.]+ outcome=ok", log.read_text())
    assert "outcome=refused (InputError)" in log.read_text()  # the broken upload of another test
    assert httpx.get(app_server.url + "gradio_api/file=" + str(log)).status_code == 403


def test_model_choices_in_the_app_name_no_server_folder_or_repository(app_server):
    client = Client(app_server.url, verbose=False)
    with pytest.raises(Exception, match="(?i)not in the list of choices|choices"):
        client.predict(content=None, prompt="ink", preset=None, negative="", strength=0.5, structure="none",
                       family=str(app_server.root / "secret"), fast=False, size=64, steps=2, seed=1,
                       api_name="/text_style")


def test_the_history_shows_no_server_paths(app_server, past_job):
    client = Client(app_server.url, verbose=False)
    gallery = client.predict(api_name="/history")
    assert gallery, "the past job is in the history"
    # the images reach the caller as copies in Gradio's cache, and the labels hold no paths
    assert all(str(app_server.outputs) not in json.dumps(item.get("caption")) for item in gallery)


def test_logins_are_throttled_after_repeated_failures(tmp_path):
    server = ServerProcess(tmp_path, auth="ada:secret", auth_max_failures="5", auth_lockout_seconds="4")
    try:
        def login(password: str) -> int:
            return httpx.post(server.url + "login", data={"username": "ada", "password": password}).status_code

        assert [login("wrong") for _ in range(5)] == [400] * 5
        assert [login("wrong") for _ in range(15)] == [429] * 15
        spoofed = [httpx.post(server.url + "login", data={"username": "ada", "password": "guess"},
                              headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(10)]
        assert spoofed == [429] * 10  # a forged client address is not a new address
        assert login("secret") == 429  # the right password too, while the address waits
        time.sleep(4.5)
        assert login("secret") == 200
        assert login("wrong") == 400  # a success starts the count again
        with ThreadPoolExecutor(20) as pool:  # a burst of parallel guesses counts as it arrives
            codes = list(pool.map(login, ["wrong"] * 20))
        assert codes.count(400) <= 4 and codes.count(429) >= 16
    finally:
        server.stop()


def test_uploads_over_the_limit_are_refused_and_not_kept(tmp_path):
    server = ServerProcess(tmp_path, max_upload_mb="1")
    try:
        big = tmp_path / "big.png"
        Image.new("RGB", (1200, 1200)).save(big, compress_level=0)  # ~4 MB
        assert big.stat().st_size > 2**21
        with big.open("rb") as handle:
            response = httpx.post(server.url + "gradio_api/upload", files={"files": ("big.png", handle)})
        assert response.status_code == 413
        assert not [p for p in server.uploads.rglob("*") if p.is_file() and p.stat().st_size > 2**20]
    finally:
        server.stop()
