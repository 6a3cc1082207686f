"""The bad-input corpus against the real CLI and the real app (issue 12, "The attack suite that stays").

Every generated input (`corpus.py`) goes through the `nstdiff` command and, where the app has a field for it, through
the app's HTTP API. Each must end in a one-line error (CLI: exit 2, no traceback or warning, the message is the last
line; app: one line, no absolute path, not "Internal error") or in a correct result, within `TIMEOUT` seconds and
`MAX_RSS_MB`, and leave every file that existed before it as it was (new results aside).

A CLI run costs ~2 s, so the CLI cases run two at a time in the background, one category (a batch) after another,
while the app cases run in the foreground; each case is still its own test (`test_cli[<id>]`, `test_app[<id>]`).
What each run printed stays in the CLI's `logs/` folder under the test's temporary directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import stat
import subprocess
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.security import corpus
from tests.security.conftest import NSTDIFF, server_env

CASES = corpus.all_cases()
CLI_CASES = [c for c in CASES if c.cli is not None]
APP_CASES = [c for c in CASES if c.app is not None]
CATEGORIES = list(dict.fromkeys(c.category for c in CASES))
TIMEOUT = 120  # seconds per case: a hang detector, with room for the other pytest worker on the same 2 cores
MAX_RSS_MB = 4096
WORKERS = min(2, os.cpu_count() or 1)
# an absolute path with at least one folder (/tmp/x/…, /etc/passwd), not a relative one (../etc) or a fraction (1/2)
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\-])/[^\s/'\"`]+/")
GROWS = ("history.sqlite", "nstdiff.log")  # the store's database and the job log change with every job


class World:
    """The inputs; a CLI environment and a running server, each with a LoRA and a result that were there before."""

    def __init__(self, root: Path, server):
        self.server, self.inputs, self.shared = server, root / "inputs", root / "inputs" / "shared"
        self.cli = root / "cli"
        self.env, self.out, self.logs = server_env(self.cli), self.cli / "out", self.cli / "logs"
        write(self.shared, corpus.shared_files())
        for case in CASES:
            write(self.inputs / case.id, case.files)
        write(self.cli / "previous", {"result.png": corpus.shared_files()["content.png"]})
        for folder in (self.out, self.logs):
            folder.mkdir(parents=True)
        meta = {"name": "keep-me", "base": "sd15", "trigger": "keep", "created": "2026-01-01T00:00:00"}
        for base in (self.cli, server.root):
            write(base / "cache" / "models" / "loras" / "keep-me",
                  {"keep-me.safetensors": corpus.lora(), "lora.json": json.dumps(meta).encode()})
        self.client = Client(server.url, verbose=False)
        self.client.predict(**resolve_app(self, None, corpus.FORM), api_name="/stylize")  # a previous result
        self.cli_kept = [self.inputs, self.cli / "previous", self.cli / "outputs", self.cli / "cache"]
        self.app_kept = [self.inputs, server.outputs, server.root / "cache"]

    def file(self, case, name: str) -> Path:
        shared = self.shared / name
        return shared if name not in (case.files if case else {}) and shared.exists() else self.inputs / case.id / name


def write(folder: Path, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        data(folder / name) if callable(data) else (folder / name).write_bytes(data)


def describe(path: Path) -> str:
    if not os.path.lexists(path):
        return "gone"
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "link to " + os.readlink(path)
    if stat.S_ISREG(mode):
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return "folder" if stat.S_ISDIR(mode) else f"special file {stat.S_IFMT(mode):o}"


def snapshot(folders: list[Path]) -> dict[str, str]:
    return {str(p): describe(p) for folder in folders for p in [folder, *folder.rglob("*")]}


def changes(before: dict, after: dict, inputs: Path) -> list[str]:
    """Existing files changed or gone, and anything new among the inputs; new results elsewhere are fine."""
    found = [f"{p}: {h} -> {after.get(p, 'gone')}" for p, h in before.items()
             if after.get(p) != h and not Path(p).name.startswith(GROWS)]
    return found + [f"new {p}" for p in after if p not in before and Path(p).is_relative_to(inputs)]


def expected(case, channel: str) -> str:
    return case.expect if isinstance(case.expect, str) else case.expect[channel == "app"]


def check_result(case, produced) -> str | None:
    """None when `produced` (an output path, or the app's LoRA table) is the correct result of the case."""
    kind, *args = case.result or ("any",)
    try:
        if kind == "lora" and isinstance(produced, dict):  # the app's library table
            names = [row[0] for row in produced["data"]]
            return None if args[0] in names else f"LoRA {args[0]} is not in the library: {names}"
        path = Path(produced)
        if not path.is_file() or path.stat().st_size == 0:
            return f"no result file at {path.name}"
        if kind in ("image", "image_wh", "format"):
            from PIL import Image

            with Image.open(path) as image:
                image.load()
                got = {"image": max(image.size), "image_wh": image.size, "format": image.format}[kind]
            return None if got == args[0] else f"result {kind} is {got}, expected {args[0]}"
        if kind == "audio":
            import soundfile

            return None if soundfile.info(str(path)).frames > 0 else "the result clip is empty"
        if kind == "mesh":
            import trimesh

            return None if trimesh.load_scene(path).geometry else "the result model has no geometry"
    except Exception as exc:  # noqa: BLE001 - an unreadable result is a wrong result
        return f"the result is unreadable ({type(exc).__name__}: {exc})"
    return None


# -- the CLI -------------------------------------------------------------------------------------------------------

def run_cli_case(world: World, case) -> dict:
    """Run one case's command (killed after TIMEOUT s) with its own peak memory, and see what became of the entries
    already in its output folder (a link there, its target, a pipe or a device must stay what they are)."""
    out = world.out / case.id
    write(out, case.outs)
    kept = [*out.iterdir(), *(p.resolve() for p in out.iterdir() if p.is_symlink()), world.cli / "previous/result.png"]
    kept = {p: describe(p) for p in kept}
    argv = [str(world.file(case, a.name)) if isinstance(a, corpus.F) else str(out / a.name)
            if isinstance(a, corpus.OUT) else str(a) for a in case.cli]
    stdout, stderr, started = world.logs / f"{case.id}.out", world.logs / f"{case.id}.err", time.monotonic()
    with stdout.open("w") as o, stderr.open("w") as e:
        process = subprocess.Popen([NSTDIFF, *argv], env=world.env, cwd=world.cli / "cwd", stdin=subprocess.DEVNULL,
                                   stdout=o, stderr=e, start_new_session=True)
    timed_out = False
    while not (waited := os.wait4(process.pid, os.WNOHANG))[0]:  # wait4: this child's own peak memory
        if timed_out := time.monotonic() - started > TIMEOUT:
            os.killpg(process.pid, signal.SIGKILL)
            waited = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(waited[1])
    run = dict(rc=process.returncode, timed_out=timed_out, stderr=stderr.read_text(errors="replace"),
               rss_mb=waited[2].ru_maxrss / 1024, seconds=time.monotonic() - started,
               touched=[f"{p.name}: {h} -> {describe(p)}" for p, h in kept.items() if describe(p) != h])
    (world.logs / f"{case.id}.rc").write_text(f"exit {run['rc']}, {run['seconds']:.1f} s, {run['rss_mb']:.0f} MB\n")
    return run


class CliRuns:
    """The selected CLI cases, run in the background two at a time, batch by batch (category by category), with a
    snapshot of the files that existed before each batch, compared after it."""

    def __init__(self, world: World, selected: set[str]):
        self.world, self.stopped = world, False
        self.cases = [c for c in CLI_CASES if c.id in selected]
        self.results: dict[str, Future] = {c.id: Future() for c in self.cases}
        self.batches: dict[str, Future] = {name: Future() for name in CATEGORIES}
        threading.Thread(target=self._run, daemon=True).start()

    def _one(self, case) -> dict:
        if self.stopped:
            raise RuntimeError("the module's tests ended before this case ran")
        return run_cli_case(self.world, case)

    def _run(self) -> None:
        with ThreadPoolExecutor(WORKERS) as pool:
            for category in CATEGORIES:
                try:
                    before = snapshot(self.world.cli_kept)
                    cases = [c for c in self.cases if c.category == category]
                    for case, future in [(c, pool.submit(self._one, c)) for c in cases]:
                        try:
                            self.results[case.id].set_result(future.result())
                        except Exception as exc:  # noqa: BLE001 - its test reports it
                            self.results[case.id].set_exception(exc)
                    self.batches[category].set_result(changes(before, snapshot(self.world.cli_kept), self.world.inputs))
                except Exception as exc:  # noqa: BLE001 - the batch's test reports it
                    self.batches[category].set_exception(exc)


def judge_cli(world: World, case, run: dict) -> list[str]:
    err = run["stderr"]
    lines = [line for line in err.splitlines() if line.strip()]
    problems = [f"no answer in {TIMEOUT} s: killed"] if run["timed_out"] else []
    problems += [f"a traceback: {lines[-1]}"] if "Traceback" in err else []
    problems += [f"a warning on the console: {line}" for line in lines if re.search(r"(?i)warning\b", line)]
    problems += [f"an existing entry changed: {t}" for t in run["touched"]]
    problems += [f"peak memory {run['rss_mb']:.0f} MB"] if run["rss_mb"] > MAX_RSS_MB else []
    want, rc = expected(case, "cli"), run["rc"]
    if rc == 2 and want != "ok":
        errors = [line for line in lines if re.match(r"(error:|nstdiff[\w -]*: error:)", line)]
        if len(errors) != 1 or lines[-1] != errors[0] or not errors[0].isprintable():
            problems.append(f"the message is not one line: {err.strip()[-600:]!r}")
    elif rc == 0 and want != "error":
        output = (world.cli / "cache/models/loras" / case.id / f"{case.id}.safetensors" if case.result[:1] == ("lora",)
                  else world.out / case.id / next(a.name for a in case.cli if isinstance(a, corpus.OUT)))
        problems += [problem] if (problem := check_result(case, output)) else []
    elif not run["timed_out"]:
        wanted = {"error": "exit 2", "ok": "a result"}.get(want, "exit 0 or 2")
        problems.append(f"exit {rc} (expected {wanted}); stderr: {err.strip()[-400:]!r}")
    return problems


# -- the app -------------------------------------------------------------------------------------------------------

def resolve_app(world: World, case, value):
    if isinstance(value, corpus.F):
        return handle_file(str(world.file(case, value.name)))
    if isinstance(value, list):
        return [resolve_app(world, case, v) for v in value]
    return {k: resolve_app(world, case, v) for k, v in value.items()} if isinstance(value, dict) else value


def raw_predict(world: World, case, api: str, values: dict):
    """The call gradio_client cannot make: values JSON has no spelling for (NaN, inf), sent as Python's json does."""
    url = world.server.url + "gradio_api/"

    def upload(value):
        if isinstance(value, list):
            return [upload(v) for v in value]
        if not isinstance(value, corpus.F):
            return value
        path = world.file(case, value.name)
        with path.open("rb") as handle:
            (server_path,) = http.post(url + "upload", files=[("files", (path.name, handle))]).json()
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    params = iter(world.client.view_api(return_format="dict", print_info=False)["named_endpoints"][api]["parameters"])
    config = world.client.config
    dependency = next(d for d in config["dependencies"] if d.get("api_name") == api.lstrip("/"))
    kinds = {c["id"]: c.get("type") for c in config["components"]}
    session = uuid.uuid4().hex
    with httpx.Client(timeout=TIMEOUT) as http:
        data = []
        for component in dependency["inputs"]:  # a gr.State is no API parameter: the page sends it, as None here
            if kinds[component] == "state":
                data.append(None)
            elif (p := next(params))["parameter_name"] in values:
                data.append(upload(values[p["parameter_name"]]))
            else:
                data.append(p["parameter_default"])
        join = {"data": data, "fn_index": dependency["id"], "session_hash": session, "event_data": None,
                "trigger_id": None}
        http.post(url + "queue/join", content=json.dumps(join),
                  headers={"content-type": "application/json"}).raise_for_status()
        with http.stream("GET", url + "queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    if message.get("success"):
                        return message["output"]["data"]
                    raise RuntimeError(str((message.get("output") or {}).get("error")))
    raise RuntimeError("the event stream ended without a result")


def server_exception(log: Path, start: int) -> str:
    """The exception line of the first traceback the server logged since `start`, for the report."""
    blocks = log.read_text(errors="replace")[start:].split("Traceback (most recent call last):")
    tail = [line for line in (blocks + [""])[1].splitlines() if line.strip() and not line.startswith((" ", "INFO"))]
    return f" (server log: {tail[0]})" if tail else ""


# -- the tests -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory, app_server) -> World:
    return World(tmp_path_factory.mktemp("bad-inputs"), app_server)


@pytest.fixture(scope="module")
def cli_runs(world, request):
    """Started by the first test, so the CLI batches run while the app cases do; only the selected cases run."""
    runs = CliRuns(world, {item.callspec.id for item in request.session.items
                           if item.originalname == "test_cli" and item.module is request.module})
    yield runs
    runs.stopped = True


@pytest.mark.parametrize("case", APP_CASES, ids=lambda c: c.id)
def test_app(case, world, cli_runs):
    api, values = case.app
    before, log_at, started = snapshot(world.app_kept), world.server.log.stat().st_size, time.monotonic()
    try:
        if case.raw:
            outcome = raw_predict(world, case, api, values)
        else:
            outcome = world.client.submit(**resolve_app(world, case, values), api_name=api).result(timeout=TIMEOUT)
    except TimeoutError:
        world.client.predict(api_name="/cancel")
        pytest.fail(f"no answer in {TIMEOUT} s")
    except Exception as exc:  # noqa: BLE001 - every refusal arrives as an exception; judged below
        outcome = exc
    problems = [f"an existing file changed: {c}" for c in changes(before, snapshot(world.app_kept), world.inputs)]
    problems += [f"server memory {rss:.0f} MB"] if (rss := world.server.rss_mb()) > MAX_RSS_MB else []
    want = expected(case, "app")
    if isinstance(outcome, Exception):
        message = str(outcome).strip()
        (world.logs / f"app-{case.id}.txt").write_text(message)
        if want == "ok":
            problems.append(f"refused a good input: {message!r}")
        elif not message or not message.isprintable() or ABSOLUTE_PATH.search(message) or "Internal error" in message:
            problems.append(f"bad message: {message!r}{server_exception(world.server.log, log_at)}")
    elif want == "error":
        problems.append(f"accepted a bad input: {str(outcome)[:300]}")
    elif problem := check_result(case, outcome[0] if isinstance(outcome, (list, tuple)) else outcome):
        problems.append(problem)
    assert not problems, f"{case.id} ({time.monotonic() - started:.1f} s): " + "; ".join(problems)


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_cli(case, world, cli_runs):
    run = cli_runs.results[case.id].result(timeout=TIMEOUT * len(CLI_CASES))
    problems = judge_cli(world, case, run)
    assert not problems, f"{case.id} (exit {run['rc']}, {run['seconds']:.1f} s): " + "; ".join(problems)


@pytest.mark.parametrize("category", CATEGORIES)
def test_cli_batch_left_existing_files_alone(category, cli_runs):
    changed = cli_runs.batches[category].result(timeout=TIMEOUT * len(CLI_CASES))
    assert not changed, f"the {category} batch changed existing files: {changed[:10]}"


def test_cli_children_stayed_within_memory(cli_runs):
    for batch in cli_runs.batches.values():
        batch.exception(timeout=TIMEOUT * len(CLI_CASES))  # waits for every batch; their own tests report failures
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert peak < MAX_RSS_MB, f"a child process peaked at {peak:.0f} MB"
