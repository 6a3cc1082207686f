"""The ray backend on a real local Ray instance (CPU only, small object store), shared by the module: Gram, audio and
the tiny diffusion pipeline give the local backend's results; progress, cancel, errors, 20 concurrent jobs on two
replicas, a replica killed mid-job, the app (history, /healthz) and the CLI on it. The tests without the `ray`
marker need no Ray instance (inputs through the object store, the choice of backend)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from nstdiff.distributed import build_executor
from nstdiff.distributed.shipping import Parcel, Unpacked, pack
from nstdiff.errors import Cancelled, InputError, ResourceError
from nstdiff.executor import CancelToken, InProcessExecutor
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import Settings
from tests.conftest import cancel_at, gradient, stripes

REPO = Path(__file__).resolve().parents[1]
REPLICAS = 2


# -- without Ray ----------------------------------------------------------------------------------------------------

def test_local_backend_is_the_default_and_needs_no_ray():
    code = ("import sys; from nstdiff.distributed import build_executor; from nstdiff.settings import Settings; "
            "import ui.server; print(type(build_executor(Settings())).__name__, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["InProcessExecutor", "False"]


def test_backend_ray_without_ray_installed_says_what_to_install(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    with pytest.raises(InputError, match=r"pip install 'nstdiff\[ray\]'"):
        build_executor(Settings(backend="ray"))


def test_healthz_says_the_local_backend(isolated_settings):
    from fastapi.testclient import TestClient

    from ui.server import create_server

    health = TestClient(create_server(isolated_settings)).get("/healthz").json()
    assert health["status"] == "ok" and health["backend"] == "local" and "deployments" not in health


def test_input_files_travel_as_bytes_and_come_back_as_their_paths(tmp_path):
    """What the object store carries: each input file's bytes once (a mesh's materials with it), written on the
    replica under its own name; an oversized file is not read but arrives as large (refused by the same check)."""
    store: dict[int, bytes] = {}

    def put(data: bytes) -> int:
        store[len(store)] = data
        return len(store) - 1

    gradient(32, 24).save(content := tmp_path / "photo.png")
    stripes(16, 16).save(style := tmp_path / "painting.png")
    request = ImageStyleRequest(method="gram", content=content, styles=[style, style], size=32)
    packed = pack(request, Settings(), put)
    assert isinstance(packed.content, Parcel) and packed.styles[0].image is packed.styles[1].image  # sent once
    assert len(store) == 2 and packed.model_fields_set == request.model_fields_set  # unset fields stay unset
    with Unpacked(packed, store.__getitem__) as unpacked:
        copy = unpacked.request.content
        assert copy != content and copy.name == "photo.png" and copy.read_bytes() == content.read_bytes()
        assert unpacked.restore({"content": str(copy), "styles": [{"image": str(copy)}]}) == \
            {"content": str(content), "styles": [{"image": str(content)}]}
        assert unpacked.restore(unpacked.request).content == content  # a model's path fields too (a video's source)
    assert not copy.exists()  # the replica's copies go with the job

    (mesh := tmp_path / "mesh").mkdir()
    (mesh / "model.obj").write_text("v 0 0 0\n")
    (mesh / "model.mtl").write_text("newmtl a\n")
    (mesh / "notes.txt").write_text("not a material")
    big = tmp_path / "big.png"
    big.write_bytes(b"0" * 2048)
    packed = pack({"model": str(mesh / "model.obj"), "content": str(big)}, Settings(max_input_bytes=1024), put)
    assert set(packed["model"].companions) == {"model.mtl"} and packed["content"].data is None
    with Unpacked(packed, store.__getitem__) as unpacked:
        assert (unpacked.request["model"].parent / "model.mtl").read_text() == "newmtl a\n"
        assert unpacked.request["content"].stat().st_size == 2048


# -- on a local Ray instance ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One Ray instance for the module, and the ray executor on it: two replicas per family, one thread each."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from tests.tiny_diffusion import build_tiny_sd

    models = tmp_path_factory.mktemp("models")
    build_tiny_sd(models / "diffusion" / "sd15")
    settings = Settings(backend="ray", outputs_dir=tmp_path_factory.mktemp("outputs"), models_dir=models,
                        cache_dir=tmp_path_factory.mktemp("cache"), device="cpu", allow_downloads=False, threads=1,
                        ray_num_cpus=0.1, ray_num_gpus={"diffusion": 0.0}, ray_min_replicas=REPLICAS,
                        ray_max_replicas=REPLICAS, queue_max_size=64)
    threads = torch.get_num_threads()
    # a new instance of its own ("local"), never a cluster another test (or `ray start`) left running here
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False)
    try:
        yield build_executor(settings), settings
    finally:
        serve.shutdown()
        ray.shutdown()
        torch.set_num_threads(threads)  # the local runs compared against set one thread, as the replicas do


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    paths = {"content": folder / "content.png", "style": folder / "style.png", "chord": folder / "chord.wav",
             "noise": folder / "noise.wav"}
    gradient(48, 40, (40, 80, 120), (200, 210, 220)).save(paths["content"])
    stripes(48, 48, (230, 30, 20), (120, 10, 10)).save(paths["style"])
    t = np.arange(11025) / 22050
    soundfile.write(paths["chord"], (0.3 * np.sin(2 * np.pi * 261.6 * t)).astype(np.float32), 22050)
    soundfile.write(paths["noise"], np.random.default_rng(0).uniform(-0.3, 0.3, 11025).astype(np.float32), 22050)
    return paths


def gram(inputs, **fields) -> ImageStyleRequest:
    return ImageStyleRequest(**{"method": "gram", "content": inputs["content"], "styles": [inputs["style"]],
                                "size": 64, "steps": 4, "seed": 7, "encoder": "random", **fields})


def replica_of(events) -> str:
    return next(e.message for e in events if e.stage == "message" and e.message.startswith("running on"))


@pytest.mark.ray
def test_gram_audio_and_diffusion_equal_the_local_backend(cluster, inputs):
    from extensions.audio.schema import AudioStyleRequest

    executor, settings = cluster
    local = InProcessExecutor(settings)
    events = []
    remote = executor.run(gram(inputs), progress=events.append)
    here = local.run(gram(inputs))
    assert np.array_equal(np.asarray(remote.image), np.asarray(here.image)) and remote.seed == here.seed == 7
    assert remote.parameters == here.parameters  # the original input paths, for the app's history
    assert [e.step for e in events if e.stage != "message"] == [1, 2, 3, 4] and "classic replica" in replica_of(events)

    audio = AudioStyleRequest(content=inputs["chord"], style=inputs["noise"], seed=0, filters=16, n_fft=512, steps=3)
    assert np.array_equal(executor.run(audio).audio, local.run(audio).audio)

    text = ImageStyleRequest(method="diffusion-text", content=inputs["content"], prompt="ukiyo-e woodblock print",
                             size=64, steps=2, seed=1)
    remote, here = executor.run(text), local.run(text)
    assert remote.method == "diffusion-text" and remote.image.tobytes() == here.image.tobytes()
    assert set(executor.health()["deployments"]) == {"classic", "audio", "diffusion"}


@pytest.mark.ray
def test_mesh_and_video_run_on_their_own_replicas_with_the_local_results(cluster, inputs, tmp_path):
    """The mesh travels with its file, the clip with its sound: the saved video keeps the source's audio track,
    read from the app's copy of the clip (the replica's copy is gone with its job)."""
    import av
    import trimesh

    from extensions.mesh.schema import MeshStyleRequest
    from extensions.video.schema import VideoStyleRequest
    from tests.video_clips import scene, write_clip

    executor, settings = cluster
    local = InProcessExecutor(settings)
    trimesh.creation.icosphere(1).export(sphere := tmp_path / "sphere.glb")
    mesh = MeshStyleRequest(model=sphere, style=inputs["style"], steps=3, views=2, view_size=32, texture_size=64,
                            encoder="random", seed=0)
    remote, here = executor.run(mesh), local.run(mesh)
    assert remote.texture.tobytes() == here.texture.tobytes() and remote.parameters == here.parameters

    clip = write_clip(tmp_path / "clip.mp4", scene(4, 48, 32), 12, audio_seconds=4 / 12)
    video = VideoStyleRequest(content=clip, style=inputs["style"], size=48, image_method="gram", encoder="random",
                              steps=3, seed=1)
    events = []
    remote, here = executor.run(video, progress=events.append), local.run(video)
    assert np.array_equal(remote.frames, here.frames) and remote.source == clip
    with av.open(str(remote.save(tmp_path / "out.mp4"))) as written:
        assert [s.type for s in written.streams] == ["video", "audio"]
    assert "video replica" in replica_of(events)
    assert {"mesh", "video"} <= set(executor.health()["deployments"])


@pytest.mark.ray
def test_errors_reach_the_caller_as_the_local_backends_messages(cluster, inputs, tmp_path):
    executor, settings = cluster
    for request in (gram(inputs, content=tmp_path / "missing.png"), gram(inputs, options={"no_such": 1})):
        with pytest.raises(InputError) as remote:
            executor.run(request)
        with pytest.raises(InputError) as here:
            InProcessExecutor(settings).run(request)
        assert str(remote.value) == str(here.value)


@pytest.mark.ray
def test_cancel_stops_the_job_on_its_replica(cluster, inputs):
    executor, _ = cluster
    token, on_progress, _ = cancel_at(3)
    with pytest.raises(Cancelled) as stopped:
        executor.run(gram(inputs, steps=5000), progress=on_progress, cancel=token)
    assert 3 <= stopped.value.step < 5000
    # the cancelled job let its replica go: two jobs at once now run on both replicas, none waits behind it
    runs = [[] for _ in range(REPLICAS)]
    with ThreadPoolExecutor(REPLICAS) as pool:
        list(pool.map(lambda seen: executor.run(gram(inputs, steps=30), progress=seen.append), runs))
    assert len({replica_of(seen) for seen in runs}) == REPLICAS


@pytest.mark.ray
def test_twenty_concurrent_jobs_on_two_replicas_none_lost(cluster, inputs):
    executor, _ = cluster
    seen = {seed: [] for seed in range(20)}
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda seed: executor.run(gram(inputs, size=32, steps=2, seed=seed),
                                                          progress=seen[seed].append), seen))
    assert [r.seed for r in results] == list(seen) and all(r.image.size == (32, 27) for r in results)
    assert len({replica_of(events) for events in seen.values()}) == REPLICAS


@pytest.mark.ray
def test_a_replica_killed_mid_job_is_replaced_and_the_job_run_again(cluster, inputs):
    import ray

    from nstdiff.distributed.ray_executor import ReplicaLostError

    executor, _ = cluster
    started = threading.Event()
    outcome = {}

    def job():
        try:
            outcome["result"] = executor.run(gram(inputs, steps=400),
                                             progress=lambda e: e.step and started.set())
        except ReplicaLostError as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=job)
    runner.start()
    assert started.wait(120)
    for actor in ray.util.list_named_actors(all_namespaces=True):  # every classic replica: the job's one too
        if "nstdiff-classic" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
    runner.join(300)
    assert not runner.is_alive(), "the job hangs after its replica was killed"
    if "error" in outcome:  # the second replica lost too: a clear message, never a hang
        assert "was lost twice" in str(outcome["error"])
    else:
        assert outcome["result"].seed == 7 and outcome["result"].image.size == (64, 53)
    assert executor.run(gram(inputs, steps=2)).image.size == (64, 53)  # still serving
    deadline = time.time() + 120
    while executor.health()["deployments"]["classic"]["replicas"].get("RUNNING") != REPLICAS:
        assert time.time() < deadline, executor.health()
        time.sleep(0.5)


@pytest.mark.ray
def test_the_app_on_ray_streams_progress_cancels_stores_results_and_reports_its_replicas(cluster, inputs):
    from gradio_client import Client, handle_file

    from tests.servers import RunningServer

    _, settings = cluster
    server = RunningServer(settings)
    try:
        client = Client(server.url, verbose=False)
        form = dict(content=handle_file(str(inputs["content"])), styles=[handle_file(str(inputs["style"]))],
                    weights="", method="gram", strength=0.8, preserve_color="none", style_scale=1.0, size=64,
                    steps=3, seed=5, encoder="random", mask_file=None, mask_paint=None)
        client.predict(**form, api_name="/stylize")
        assert len(list((settings.outputs_dir / "results").glob("*.png"))) == 1  # stored by the app's process
        with urllib.request.urlopen(server.url + "healthz") as response:
            health = json.load(response)
        assert health["backend"] == "ray" and health["address"]
        assert health["deployments"]["classic"]["replicas"] == {"RUNNING": REPLICAS}

        job = client.submit(**{**form, "steps": 5000}, api_name="/stylize")
        deadline, progress = time.time() + 120, None
        while time.time() < deadline and not (progress and progress.length):  # after "running on …" come steps
            progress = (job.status().progress_data or [None])[0]
            time.sleep(0.1)
        assert progress is not None and progress.length == 5000
        assert client.predict(api_name="/cancel").startswith("Cancelling")
        with pytest.raises(Exception, match="Cancelled at step"):
            job.result(timeout=60)
    finally:
        server.stop()


@pytest.mark.ray
def test_the_cli_runs_on_ray_with_the_local_result(cluster, inputs, tmp_path, monkeypatch):
    from nstdiff.commands import main

    executor, settings = cluster
    for name, value in (("THREADS", "1"), ("BACKEND", "local"), ("RAY_ADDRESS", "")):  # the flags change them
        monkeypatch.setenv(f"NSTDIFF_{name}", value)
    flags = [str(inputs["content"]), "--style", str(inputs["style"]), "--method", "gram", "--size", "64", "--steps",
             "4", "--seed", "7", "--encoder", "random", "--quiet"]
    assert main(["stylize", *flags, "-o", str(tmp_path / "ray.png"), "--backend", "ray",
                 "--ray-address", executor.address]) == 0
    local = InProcessExecutor(settings).run(gram(inputs))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ray.png").convert("RGB")), np.asarray(local.image))


@pytest.mark.ray
def test_training_runs_as_a_ray_task_and_resumes_from_its_checkpoint(cluster, tmp_path, monkeypatch):
    from nstdiff.training.adain_decoder import DecoderTraining

    executor, settings = cluster
    content, style = tmp_path / "content", tmp_path / "style"
    content.mkdir(), style.mkdir()
    for i in range(4):
        gradient(40, 36, (30 * i, 80, 200 - 30 * i), (220, 200 - 40 * i, 60)).save(content / f"c{i}.png")
        stripes(40, 40, (200, 40 * i, 30), (20, 20, 120 + 30 * i), period=4 + 2 * i).save(style / f"s{i}.png")
    config = DecoderTraining(content_dir=content, style_dir=style, encoder="random", batch=2, size=32, steps=30,
                             checkpoint_every=5, learning_rate=1e-3)
    cancel, stop_at_13, _ = cancel_at(13, stage="train")
    with pytest.raises(Cancelled):
        executor.train(config, progress=stop_at_13, cancel=cancel)
    events = []
    report = executor.train(config, progress=events.append)
    assert 10 <= report.start_step < 30 and report.start_step % 5 == 0  # the checkpoint the cancelled task left
    assert str(report.path).startswith(str(settings.models_path))  # written where the cluster's models live
    assert any(f"resuming from step {report.start_step}" in e.message for e in events)


@pytest.mark.ray
def test_lora_training_runs_as_a_ray_task_and_resumes_from_its_checkpoint(cluster, tmp_path):
    from nstdiff.training.lora_data import LoraTraining

    executor, settings = cluster
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        stripes(48, 40, (200, 40 * i, 30), (20, 20, 120 + 20 * i), period=4 + 2 * i).save(images / f"s{i}.png")
    config = LoraTraining(images=images, name="on-ray", steps=24, checkpoint_every=3, sample_every=0, resolution=32,
                          batch=2, rank=4, learning_rate=1e-2, sample_steps=2)
    cancel, stop_at_5, _ = cancel_at(5, stage="train")
    with pytest.raises(Cancelled):
        executor.train(config, progress=stop_at_5, cancel=cancel)
    # the cancel crosses the cluster while training goes on: the task stops a step or a few after step 5
    checkpoints = settings.models_path / "loras" / "on-ray" / "checkpoints"
    kept = max(int(p.name.rsplit("-", 1)[1]) for p in checkpoints.glob("step-*") if not p.name.endswith(".partial"))
    assert 3 <= kept < 24
    events = []
    report = executor.train(config, progress=events.append)
    assert report.start_step == kept and report.steps == 24  # the newest checkpoint the cancelled task left
    assert report.weights.is_file() and str(report.weights).startswith(str(settings.models_path))
    assert any(e.message.startswith(f"resuming from step {kept}") for e in events)


@pytest.mark.ray
def test_a_training_waiting_for_room_says_what_it_waits_for_and_cancel_ends_the_wait(cluster, tmp_path):
    import ray

    from nstdiff.distributed.ray_executor import RayExecutor
    from nstdiff.training.adain_decoder import DecoderTraining

    _, settings = cluster
    # more than is free even if what the tests before left running (a training task ending) frees its CPU
    executor = RayExecutor(settings.model_copy(update={"ray_num_cpus": 1.5}))

    @ray.remote
    class Hog:
        def ready(self) -> bool:
            return True

    hog = Hog.options(num_cpus=ray.available_resources()["CPU"] - 0.05).remote()  # the cluster's free CPUs
    ray.get(hog.ready.remote())
    (content := tmp_path / "content").mkdir(), (style := tmp_path / "style").mkdir()
    gradient(40, 36).save(content / "c.png"), stripes(40, 40).save(style / "s.png")
    config = DecoderTraining(content_dir=content, style_dir=style, encoder="random", batch=1, size=32, steps=5)
    token, events, outcome = CancelToken(), [], {}

    def train() -> None:
        try:
            executor.train(config, progress=events.append, cancel=token)
        except Cancelled as exc:
            outcome["cancelled"] = exc

    runner = threading.Thread(target=train)
    runner.start()
    try:
        wait_for(lambda: events, "no word of the wait", 30)
        assert events[0].message.startswith("waiting for room on the Ray cluster: this training asks for 1.5 CPU")
    finally:
        token.cancel()
        runner.join(60)
        ray.kill(hog)
    assert not runner.is_alive() and "cancelled" in outcome and len(events) == 1  # it never started


def classic_replicas(executor, state: str = "RUNNING") -> int:
    return executor.health()["deployments"].get("classic", {}).get("replicas", {}).get(state, 0)


def wait_for(condition, what: str, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.2)


@pytest.mark.ray
def test_a_family_grows_with_its_queue_and_shrinks_without_killing_a_running_job(cluster, inputs):
    """Redeploys the classic family, none to two replicas. Four long jobs at once start a second replica, which takes
    a waiting job. When the queue shrinks, Serve stops its newest replica, busy or not: its job finishes there (with
    Serve's default the job was killed after 20 s and started over on the other replica). Idle, both stop (a GPU
    family would free its GPUs); the next job starts one again."""
    from ray import serve

    from nstdiff.distributed.ray_executor import RayExecutor

    _, settings = cluster
    serve.delete("nstdiff-classic")
    with pytest.raises(ResourceError, match=r"has 2 CPUs in all and a classic replica asks for 64 "):
        RayExecutor(settings.model_copy(update={"ray_num_cpus": 64})).run(gram(inputs))
    # scaling down after 6 idle seconds: long enough for the jobs to reach the first replica once it is up
    executor = RayExecutor(settings.model_copy(update={"ray_min_replicas": 0, "ray_max_replicas": 2,
                                                       "ray_scale_up_after_s": 1, "ray_scale_down_after_s": 6}))
    tokens, seen = {seed: CancelToken() for seed in range(4)}, {seed: [] for seed in range(4)}

    def job(seed: int) -> None:
        with pytest.raises(Cancelled):
            executor.run(gram(inputs, steps=10000, seed=seed), progress=lambda e: seen[seed].append((time.time(), e)),
                         cancel=tokens[seed])

    def working() -> dict[int, str]:
        """The replica each running job is on (its replica's first event names it)."""
        return {seed: next(e.message for _, e in reversed(events) if e.message.startswith("running on"))
                for seed, events in seen.items() if events and not jobs[seed].done()}

    with ThreadPoolExecutor(4) as pool:
        jobs = {seed: pool.submit(job, seed) for seed in seen}
        try:
            wait_for(lambda: classic_replicas(executor) == 2, "no second replica started for a queue of four jobs", 180)
            wait_for(lambda: len(set(working().values())) == 2, "the new replica took no waiting job")
            first_seen = {}  # when each replica took its first job
            for at, message in sorted((at, e.message) for events in seen.values() for at, e in events):
                first_seen.setdefault(message, at)
            now = working()
            newest = max(set(now.values()), key=first_seen.__getitem__)
            kept = next(seed for seed, where in now.items() if where == newest)
            for seed in seen.keys() - {kept}:
                tokens[seed].cancel()
                jobs[seed].result()
            # one job for two replicas: Serve stops its newest, the one running that job
            wait_for(lambda: classic_replicas(executor) == 1, "no replica stopped for a queue of one job")
            steps = len(seen[kept])
            time.sleep(30)
            assert working() == {kept: newest} and len(seen[kept]) > steps  # the job goes on where it was
            assert classic_replicas(executor, "STOPPING") == 1  # on the replica stopping once it is done
        finally:
            for token in tokens.values():
                token.cancel()
        [j.result() for j in jobs.values()]
    wait_for(lambda: classic_replicas(executor) == 0, "the idle replicas did not stop")
    assert executor.run(gram(inputs, steps=2)).image.size == (64, 53)  # a replica starts again for it
    assert classic_replicas(executor) == 1


@pytest.mark.ray
def test_a_full_queue_gets_the_apps_queue_full_message(cluster, inputs):
    """Last in the module: it redeploys the classic family with one replica and room for one waiting job."""
    from ray import serve

    from nstdiff.distributed.ray_executor import QUEUE_FULL, RayExecutor

    _, settings = cluster
    serve.delete("nstdiff-classic")
    executor = RayExecutor(settings.model_copy(update={"queue_max_size": 1, "ray_min_replicas": 1,
                                                       "ray_max_replicas": 1}))
    token, running = CancelToken(), threading.Event()

    def job(seed: int) -> str:
        try:
            executor.run(gram(inputs, steps=10000, seed=seed), cancel=token,
                         progress=lambda event: event.stage != "message" and running.set())
        except ResourceError as exc:
            return str(exc)
        except Cancelled:
            return "cancelled"
        return "finished"

    with ThreadPoolExecutor(4) as pool:
        outcomes = [pool.submit(job, 0)]
        assert running.wait(120), "the first job did not start"
        outcomes.append(pool.submit(job, 1))  # waits for the one replica
        time.sleep(2)
        outcomes += [pool.submit(job, seed) for seed in (2, 3)]  # no room left: refused at once
        deadline = time.time() + 60
        while not all(f.done() for f in outcomes[2:]):
            assert time.time() < deadline, "no job was refused"
            time.sleep(0.1)
        token.cancel()
        assert [f.result() for f in outcomes] == ["cancelled", "cancelled", QUEUE_FULL, QUEUE_FULL]
