"""History of results: SQLite plus the output files under the outputs folder, so results survive a restart.

Layout: `<outputs>/history.sqlite`, results in `<outputs>/results/<id><suffix>` (`.png`, `.wav`, `.glb`: whatever the
result's modality writes, with a `<id>.preview.png` beside outputs that are not pictures), and the input files a
result was made from in `<outputs>/inputs/<sha256>.<ext>` (content-addressed, so each is stored once and a history
entry can be run again after the uploads it came from are gone).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from nstdiff.imageio import atomic_write, save_png
from nstdiff.schema import RunResult

# Request fields (at any depth) that name an input file the result was made from.
INPUT_FIELDS = frozenset({"content", "image", "mask", "init_image", "style", "model", "style_masks"})


def map_inputs(value: Any, fn, key: str | None = None) -> Any:
    """`value` with `fn` applied to every input file path named in it (fields in INPUT_FIELDS, at any depth)."""
    if isinstance(value, dict):
        return {k: map_inputs(v, fn, k) for k, v in value.items()}
    if isinstance(value, list):
        return [map_inputs(v, fn, key) for v in value]
    if key in INPUT_FIELDS and isinstance(value, str) and value:
        return fn(value)
    return value


SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    method TEXT NOT NULL,
    encoder TEXT,
    seed INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    timings TEXT NOT NULL,
    notes TEXT NOT NULL,
    output TEXT NOT NULL
)
"""


# the name each kept input had when it came (kept files are named by their content): reloaded, it keeps that name
NAMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS input_names (
    stored TEXT PRIMARY KEY,
    name TEXT NOT NULL
)
"""


LORA_SCHEMA = """
CREATE TABLE IF NOT EXISTS loras (
    name TEXT PRIMARY KEY,
    info TEXT NOT NULL
)
"""


class HistoryEntry(BaseModel):
    id: str
    created: float
    method: str
    encoder: str | None
    seed: int
    parameters: dict[str, Any]
    timings: dict[str, float]
    notes: list[str]
    output: Path

    @property
    def picture(self) -> Path:
        """What a gallery shows: the output itself, or the preview saved beside an output that is not a picture."""
        preview = self.output.with_name(f"{self.id}.preview.png")
        return preview if preview.exists() else self.output

    @property
    def label(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"{stamp} · {self.method} · {self.encoder or '-'} · seed {self.seed} · #{self.id}"


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.results = self.root / "results"
        self.inputs = self.root / "inputs"
        for folder in (self.results, self.inputs):
            folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "history.sqlite"
        with self._connect() as db:
            db.execute(SCHEMA)
            db.execute(LORA_SCHEMA)
            db.execute(NAMES_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    def keep_input(self, path: str | Path) -> Path:
        """Copy an input file into the store (once per content) and return the stored path."""
        path = Path(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        stored = self.inputs / f"{digest}{path.suffix.lower() or '.img'}"
        if not stored.exists():  # copied under a temporary name first: a kill never leaves a short file here
            atomic_write(stored, lambda tmp: shutil.copyfile(path, tmp))
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO input_names VALUES (?, ?)", (stored.name, path.name))
        return stored

    def input_name(self, stored: str | Path) -> str:
        """The name a kept input came with (its stored name for inputs kept before names were recorded)."""
        with self._connect() as db:
            row = db.execute("SELECT name FROM input_names WHERE stored = ?", (Path(stored).name,)).fetchone()
        return row[0] if row else Path(stored).name

    def _keep_inputs(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The parameters with every input file path replaced by its kept copy."""
        return map_inputs(json.loads(json.dumps(parameters, default=str)),
                          lambda path: str(self.keep_input(path)) if Path(path).is_file() else path)

    def add(self, result: RunResult, entry_id: str | None = None) -> HistoryEntry:
        """Save the result's output (and a preview picture) and the inputs it was made from, then index it: files
        first, row last, so a kill at any point leaves at most files without a row, which `recover` removes."""
        entry_id = entry_id or uuid.uuid4().hex[:12]
        parameters = self._keep_inputs(result.parameters)
        output = result.save(self.results / f"{entry_id}{result.suffix}")
        preview = result.preview()
        if preview is not None:
            save_png(preview, self.results / f"{entry_id}.preview.png")
        entry = HistoryEntry(
            id=entry_id, created=result.created, method=result.method, encoder=result.encoder, seed=result.seed,
            parameters=parameters, timings=result.timings, notes=result.notes, output=output,
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.id, entry.created, entry.method, entry.encoder, entry.seed, json.dumps(entry.parameters),
                 json.dumps(entry.timings), json.dumps(entry.notes), str(output.relative_to(self.root))),
            )
        return entry

    def claim(self) -> IO | None:
        """Become this store's one server: an exclusive lock on `server.lock`, held while the returned file stays open;
        None when another process holds it."""
        handle = (self.root / "server.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def recover(self) -> dict[str, int]:
        """After a crash: drop rows whose output is gone, and result or input files that no row names. Call it at
        start-up, while no other process writes to this store."""
        with self._connect() as db:
            rows = db.execute("SELECT id, parameters, output FROM results").fetchall()
            gone = [entry_id for entry_id, _, output in rows if not (self.root / output).is_file()]
            db.executemany("DELETE FROM results WHERE id = ?", [(entry_id,) for entry_id in gone])
        ids = {entry_id for entry_id, _, _ in rows} - set(gone)
        kept: set[str] = set()
        for entry_id, parameters, _ in rows:
            if entry_id in ids:
                map_inputs(json.loads(parameters), lambda path: kept.add(Path(path).name))
        orphans = [f for f in self.results.iterdir() if f.name.split(".", 1)[0] not in ids]
        orphans += [f for f in self.inputs.iterdir() if f.name not in kept]
        for orphan in orphans:
            orphan.unlink(missing_ok=True)
        return {"rows": len(gone), "files": len(orphans)}

    def _entry(self, row: tuple) -> HistoryEntry:
        entry_id, created, method, encoder, seed, parameters, timings, notes, output = row
        return HistoryEntry(id=entry_id, created=created, method=method, encoder=encoder, seed=seed,
                            parameters=json.loads(parameters), timings=json.loads(timings), notes=json.loads(notes),
                            output=self.root / output)

    def list(self, limit: int = 100) -> list[HistoryEntry]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM results ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [self._entry(row) for row in rows if (self.root / row[-1]).exists()]

    def get(self, entry_id: str) -> HistoryEntry | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM results WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def index_loras(self, infos: list[dict[str, Any]]) -> None:
        """Replace the LoRA library's index with `infos` (the library's folders are the truth)."""
        with self._connect() as db:
            db.execute("DELETE FROM loras")
            db.executemany("INSERT INTO loras VALUES (?, ?)", [(i["name"], json.dumps(i)) for i in infos])

    def indexed_loras(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            return [json.loads(row[0]) for row in db.execute("SELECT info FROM loras ORDER BY name")]
