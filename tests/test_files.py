"""What an HTTP caller may name and what a message may show (`ui/files.py`), checked without a server."""
from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import pytest

from nstdiff import ImageStyleRequest, stylize
from ui.files import offer, redact_paths, uploaded


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def test_only_files_inside_the_upload_folder_are_accepted(uploads, tmp_path):
    (uploads / "abc").mkdir()
    photo = uploads / "abc" / "photo.png"
    photo.write_bytes(b"png")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x")
    (uploads / "abc" / "link.png").symlink_to(secret)
    assert uploaded(str(photo)) == str(photo.resolve())
    assert uploaded(SimpleNamespace(path=str(photo))) == str(photo.resolve())  # a Gradio file object
    for bad in (secret, uploads / ".." / "secret.txt", uploads / "abc" / "link.png", uploads / "abc",
                uploads / "missing.png"):
        with pytest.raises(gr.Error, match="not uploaded to this server"):
            uploaded(str(bad))


def test_offer_copies_a_server_file_into_the_upload_folder(uploads, tmp_path):
    kept = tmp_path / "outputs" / "inputs" / "0123.png"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"kept input")
    copy = offer(kept)
    assert copy.startswith(str(uploads.resolve())) and open(copy, "rb").read() == b"kept input"
    assert uploaded(copy) == copy  # and a caller may send it back


def test_messages_keep_file_names_and_lose_folders():
    assert redact_paths("content image '/tmp/gradio/ab12/holiday.png' is damaged") == \
        "content image 'holiday.png' is damaged"
    assert redact_paths("cannot write ~/out/x.png; see C:\\Users\\ada\\x.png") == "cannot write x.png; see x.png"
    assert redact_paths("use 0.7/0.3 weights, https://huggingface.co/owner/name and and/or") == \
        "use 0.7/0.3 weights, https://huggingface.co/owner/name and and/or"


def test_history_parameters_show_file_names_and_reuse_hands_out_copies(uploads, images, isolated_settings):
    from ui.app import App
    from ui.history_tools import select_history

    app = App(settings=isolated_settings)
    result = stylize(ImageStyleRequest(content=images["content"], styles=[images["red"]], size=32, steps=2, seed=1,
                                       encoder="random"))
    entry = app.store.add(result)
    entry_id, shown = select_history(app, SimpleNamespace(value={"caption": entry.label}))
    assert entry_id == entry.id and shown["content"].endswith(".png") and "/" not in shown["content"]
    assert str(isolated_settings.outputs_dir) not in json.dumps(shown)
    use = next(fn for fn in app.build().fns.values() if fn.name == "use").fn  # History's "use these settings"
    reused = use(entry.id)
    assert reused[0].startswith(str(uploads.resolve())) and reused[1][0].startswith(str(uploads.resolve()))
