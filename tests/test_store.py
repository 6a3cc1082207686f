"""The history store after a crash: `recover` leaves rows and files one to one."""
from __future__ import annotations

import sqlite3

from PIL import Image

from nstdiff.schema import StyleResult
from nstdiff.store import Store


def a_result(content) -> StyleResult:
    return StyleResult(image=Image.new("RGB", (8, 8), "red"), method="gram", encoder="random", seed=1,
                       parameters={"content": str(content), "styles": [{"image": str(content), "weight": 1.0}]})


def test_recover_removes_what_a_kill_left_half_stored(tmp_path, images):
    store = Store(tmp_path / "outputs")
    kept = store.add(a_result(images["content"]))
    lost = store.add(a_result(images["red"]))
    lost.output.unlink()  # a row whose file is gone
    (store.results / "abcdef012345.png").write_bytes(b"no row")  # a file whose row was never written
    (store.results / ".abcdef012345.png.x1.part").write_bytes(b"half")  # an interrupted atomic write
    (store.inputs / ("0" * 32 + ".png")).write_bytes(b"an input no row names")

    assert store.recover() == {"rows": 1, "files": 4}  # with the input only the lost row named
    assert [entry.id for entry in store.list()] == [kept.id]
    with sqlite3.connect(store.db_path) as db:
        assert [row[0] for row in db.execute("SELECT id FROM results")] == [kept.id]
    assert {f.name.split(".", 1)[0] for f in store.results.iterdir()} == {kept.id}
    assert [Image.open(p).size for p in store.inputs.iterdir()] == [(48, 40)]  # only the kept result's input
    assert store.recover() == {"rows": 0, "files": 0}


def test_only_one_process_claims_a_store(tmp_path):
    first, second = Store(tmp_path / "outputs"), Store(tmp_path / "outputs")
    held = first.claim()
    assert held is not None and second.claim() is None  # a second server must not recover under the first
    held.close()
    again = second.claim()
    assert again is not None
    again.close()
