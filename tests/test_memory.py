"""Memory: a request that cannot fit is refused before it runs, with a size that fits; running out of memory during
a run becomes the same readable error."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from nstdiff.errors import ResourceError
from nstdiff.executor import InProcessExecutor
from nstdiff.memory import memory_budget
from nstdiff.methods.gram import GramMethod
from nstdiff.registry import get_method
from nstdiff.schema import ImageStyleRequest
from nstdiff.settings import reload_settings


def request(images, size: int, method: str = "gram", **fields) -> ImageStyleRequest:
    content = fields.pop("content", images["content"])
    return ImageStyleRequest(method=method, content=content, styles=[images["red"]], size=size, steps=2, seed=0,
                             encoder="random", **fields)


def estimate(method: str, req: ImageStyleRequest) -> int:
    return get_method(method).estimate_memory(req, reload_settings())


@pytest.fixture
def spy_execute(monkeypatch):
    """Replace the Gram method's whole run (image decoding, model loading, optimisation) with one that records the
    sizes it was asked for."""
    calls = []
    monkeypatch.setattr(GramMethod, "execute", lambda self, req, context: calls.append(req.size))
    return calls


@pytest.mark.parametrize("method, options", [("gram", {}), ("gram", {"optimizer": "adam"}),
                                             ("adain", {"variant": "optimise"}), ("adain", {"variant": "decoder"}),
                                             ("chain", {"first": "gram"})])
def test_the_estimate_grows_with_the_size(images, method, options):
    sizes = (64, 256, 1024, 4096)
    estimates = [estimate(method, request(images, size, method, options=options)) for size in sizes]
    assert estimates == sorted(estimates) and len(set(estimates)) == len(sizes)
    assert estimates[-1] > 4 * estimates[1]


def test_the_estimate_follows_the_content_aspect_ratio(images, tmp_path):
    Image.new("RGB", (400, 400)).save(tmp_path / "square.png")
    Image.new("RGB", (400, 100)).save(tmp_path / "wide.png")
    square = estimate("gram", request(images, 1024, content=tmp_path / "square.png"))
    wide = estimate("gram", request(images, 1024, content=tmp_path / "wide.png"))
    assert wide < square / 2


def test_the_chain_estimates_its_classic_first_stage(images):
    assert estimate("chain", request(images, 512, "chain", options={"first": "gram"})) == estimate(
        "gram", request(images, 512))


def test_too_large_a_request_is_refused_before_it_runs_and_the_named_size_fits(images, spy_execute, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MAX_JOB_MEMORY_GB", "0.6")
    reload_settings()
    with pytest.raises(ResourceError) as refused:
        InProcessExecutor().run(request(images, 2048))
    message = str(refused.value)
    assert spy_execute == []
    assert "\n" not in message and "2048 px gram run needs about" in message
    assert "allows 0.6 GB (NSTDIFF_MAX_JOB_MEMORY_GB)" in message
    fits = int(re.search(r"use a size of (\d+) px or less", message).group(1))
    assert 16 <= fits < 2048
    assert estimate("gram", request(images, fits)) <= 0.6e9 < estimate("gram", request(images, fits + 1))
    InProcessExecutor().run(request(images, fits))
    assert spy_execute == [fits]


def test_a_budget_that_nothing_fits_says_so(images, spy_execute, monkeypatch):
    monkeypatch.setenv("NSTDIFF_MAX_JOB_MEMORY_GB", "0.01")
    reload_settings()
    with pytest.raises(ResourceError, match="even the smallest size does not fit"):
        InProcessExecutor().run(request(images, 64))
    assert spy_execute == []


def test_the_automatic_budget_is_part_of_the_free_memory():
    import psutil

    budget = memory_budget(reload_settings(), torch.device("cpu"))
    assert 0 < budget.limit < psutil.virtual_memory().total
    assert "NSTDIFF_MAX_JOB_MEMORY_GB" in budget.source


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    MemoryError(),
])
def test_running_out_of_memory_during_a_run_is_a_resource_error(images, monkeypatch, error):
    def transfer(self, job, options, context):
        raise error

    monkeypatch.setattr(GramMethod, "transfer", transfer)
    with pytest.raises(ResourceError) as failed:
        InProcessExecutor().run(request(images, 64))
    assert str(failed.value) == "ran out of memory at 64 px; try a size of 45 px or less (half the pixels)"
    assert failed.value.__context__ is None and failed.value.__cause__ is None  # no traceback holding the tensors


def test_other_runtime_errors_are_not_taken_for_memory(images, monkeypatch):
    def transfer(self, job, options, context):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(GramMethod, "transfer", transfer)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        InProcessExecutor().run(request(images, 64))


def test_the_cli_refuses_with_one_line_and_exit_2(images, tmp_path):
    out = tmp_path / "out.png"
    run = subprocess.run([sys.executable, "-m", "nstdiff", "stylize", str(images["content"]), "--style",
                          str(images["red"]), "--size", "2048", "--encoder", "random", "-o", str(out)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NSTDIFF_MAX_JOB_MEMORY_GB": "0.6"})
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a 2048 px gram run needs about"), run.stderr
    assert re.search(r"use a size of \d+ px or less$", lines[0])
    assert not out.exists()


def test_the_cli_reports_running_out_of_memory_in_one_line_with_exit_2(images, tmp_path, monkeypatch, capsys):
    from nstdiff.commands import main

    def transfer(self, job, options, context):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes")

    monkeypatch.setattr(GramMethod, "transfer", transfer)
    out = tmp_path / "out.png"
    code = main(["stylize", str(images["content"]), "--style", str(images["red"]), "--size", "64", "--encoder",
                 "random", "-o", str(out)])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: ran out of memory at 64 px; try a size of 45 px or less (half the pixels)"]
