"""Requests, the registry and routing: the contract every front end relies on."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from nstdiff import ImageStyleRequest, InputError, get_method, list_methods, registry, stylize
from nstdiff.methods.base import ImageMethod, TransferOutput
from nstdiff.registry import Capabilities, register_method
from nstdiff.schema import Frozen

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"size": 8}, "size"),
        ({"size": 100_000}, "size"),
        ({"steps": 0}, "steps"),
        ({"controls": {"strength": 1.5}}, "strength"),
        ({"controls": {"strength": float("nan")}}, "strength"),
        ({"controls": {"style_scale": float("inf")}}, "style_scale"),
        ({"styles": []}, "styles"),
        ({"styles": ["a.png"] * 9}, "styles"),
        ({"styles": [{"image": "a.png", "weight": -1}]}, "weight"),
        ({"controls": {"mask_colors": ["red"]}}, "hex colour"),
        ({"colour": "x"}, "colour"),
    ],
)
def test_out_of_range_requests_name_the_field(changes, field):
    data = {"content": "c.png", "styles": ["s.png"], **changes}
    with pytest.raises(ValidationError, match=field):
        ImageStyleRequest(**data)


def test_style_weights_are_normalised():
    request = ImageStyleRequest(styles=[{"image": "a.png", "weight": 3}, {"image": "b.png", "weight": 1}])
    assert request.style_weights == [0.75, 0.25]


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(InputError, match="unknown method 'nope'; available: .*gram"):
        get_method("nope")


class EchoOptions(Frozen):
    level: float = 0.5


@pytest.fixture
def echo_method():
    @register_method
    class EchoMethod(ImageMethod):
        """Returns the content unchanged: shows that routing and shared controls work for any method."""

        name = "echo-test"
        title = description = "echo"
        options_model = EchoOptions
        capabilities = Capabilities(needs_content=True)

        def transfer(self, job, options, context):
            context.step(1, 1)
            return TransferOutput(image=job.content, options=options)

    yield EchoMethod
    registry._METHODS.pop("echo-test")


def test_stylize_routes_to_a_registered_method_and_validates_its_options(images, echo_method):
    result = stylize(ImageStyleRequest(method="echo-test", content=images["content"], styles=[images["red"]], size=24))
    assert result.method == "echo-test" and result.parameters["options"] == {"level": 0.5}
    with pytest.raises(InputError, match="invalid options for method 'echo-test': level"):
        stylize(ImageStyleRequest(method="echo-test", content=images["content"], styles=[images["red"]],
                                  options={"level": "high"}))


def test_capabilities_are_enforced(images, echo_method):
    with pytest.raises(InputError, match="needs a content image"):
        stylize(ImageStyleRequest(method="echo-test", styles=[images["red"]]))
    with pytest.raises(InputError, match="does not support masks"):
        stylize(ImageStyleRequest(method="echo-test", content=images["content"], styles=[images["red"]],
                                  controls={"mask": images["content"]}))


def test_extensions_register_through_entry_points(monkeypatch):
    loaded = []

    def load():
        loaded.append(True)

        @register_method
        class Plugin(ImageMethod):
            name, title, description = "plugin-test", "plugin", "from an entry point"
            options_model = EchoOptions

            def transfer(self, job, options, context):
                return TransferOutput(image=job.content)

    broken = SimpleNamespace(name="broken", load=lambda: 1 / 0)
    monkeypatch.setattr(registry, "entry_points", lambda group: [SimpleNamespace(name="p", load=load), broken])
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert "plugin-test" in [m.name for m in list_methods()]  # the broken one is logged, not fatal
        assert loaded == [True]
    finally:
        registry._METHODS.pop("plugin-test", None)


def test_the_first_jobs_arriving_together_all_find_their_method():
    """A fresh process (a server's first jobs, or a Ray replica's): eight threads ask at once while the methods load."""
    code = ("import threading; from nstdiff.registry import get_method; found = []; "
            "ts = [threading.Thread(target=lambda: found.append(get_method('gram').name)) for _ in range(8)]; "
            "[t.start() for t in ts]; [t.join() for t in ts]; print(found.count('gram'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["8"], out.stderr[-500:]
