"""History of results: SQLite plus the output files under the outputs folder, so results survive a restart.

Layout: `<outputs>/history.sqlite`, results in `<outputs>/results/<id><suffix>` (`.png`, `.wav`, `.glb`: whatever the
result's modality writes, with a `<id>.preview.png` beside outputs that are not pictures), and the input files a
result was made from in `<outputs>/inputs/<sha256>.<ext>` (content-addressed, so each is stored once and a history
entry can be run again after the uploads it came from are gone).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nstdiff.schema import RunResult

# Request fields (at any depth) that name an input file the result was made from.
INPUT_FIELDS = frozenset({"content", "image", "mask", "init_image", "style", "model"})

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

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    def keep_input(self, path: str | Path) -> Path:
        """Copy an input file into the store (once per content) and return the stored path."""
        path = Path(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        stored = self.inputs / f"{digest}{path.suffix.lower() or '.img'}"
        if not stored.exists():
            shutil.copyfile(path, stored)
        return stored

    def _keep_inputs(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The parameters with every input file path replaced by its kept copy."""
        def keep(value: Any, key: str | None = None) -> Any:
            if isinstance(value, dict):
                return {k: keep(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [keep(v, key) for v in value]
            if key in INPUT_FIELDS and isinstance(value, str) and value and Path(value).is_file():
                return str(self.keep_input(value))
            return value

        return keep(json.loads(json.dumps(parameters, default=str)))

    def add(self, result: RunResult) -> HistoryEntry:
        """Save the result's output (and a preview picture) and the inputs it was made from, and index it."""
        entry_id = uuid.uuid4().hex[:12]
        parameters = self._keep_inputs(result.parameters)
        output = result.save(self.results / f"{entry_id}{result.suffix}")
        preview = result.preview()
        if preview is not None:
            preview.save(self.results / f"{entry_id}.preview.png")
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
