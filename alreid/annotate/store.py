"""The durable record of an annotation session: one SQLite file in WAL mode.

Everything a restart needs is here, so a process killed at any moment loses at most the answer
being typed: the settings, each cycle's batch of pairs exactly as the sampler chose it (stored, never
recomputed), every answer with annotator, time and duration (undone answers are kept, flagged), the
leases, and after each finished cycle the trial checkpoint (constraints, trainer state, records).
Every write is one transaction committed before the call returns.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from alreid.errors import AlreidError

SCHEMA_VERSION = "1"
ANSWERS = ("same", "different", "unsure")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id INTEGER PRIMARY KEY AUTOINCREMENT,
    cycle INTEGER NOT NULL, pos INTEGER NOT NULL,
    u INTEGER NOT NULL, v INTEGER NOT NULL,
    image_u TEXT NOT NULL, image_v TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '{}',
    UNIQUE (cycle, pos));
CREATE TABLE IF NOT EXISTS answers (
    answer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id INTEGER NOT NULL REFERENCES pairs(pair_id),
    cycle INTEGER NOT NULL, u INTEGER NOT NULL, v INTEGER NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('same', 'different', 'unsure')),
    annotator TEXT NOT NULL, answered_at REAL NOT NULL, seconds REAL,
    undone_at REAL, undone_why TEXT);
CREATE INDEX IF NOT EXISTS answers_pair ON answers(pair_id);
CREATE TABLE IF NOT EXISTS leases (
    pair_id INTEGER PRIMARY KEY REFERENCES pairs(pair_id),
    annotator TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    cycle INTEGER PRIMARY KEY, finished_at REAL NOT NULL,
    constraints TEXT NOT NULL, trainer BLOB NOT NULL, records TEXT NOT NULL);
"""


class StoreError(AlreidError):
    """The annotation store cannot be used as asked (wrong settings, damaged file)."""


@dataclass(frozen=True)
class Pair:
    """One pair of a stored batch."""

    pair_id: int
    cycle: int
    pos: int
    u: int
    v: int
    image_u: str
    image_v: str
    why: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """One active (not undone) answer."""

    answer_id: int
    pair_id: int
    cycle: int
    u: int
    v: int
    answer: str
    annotator: str
    answered_at: float
    seconds: float | None


class AnnotationStore:
    """SQLite-backed session state; safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"--store {self.path} is a folder; name a file such as my_zoo.annotations.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an answer survives a power cut once acknowledged
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not an alreid annotation store ({exc}); pass another --store") from None
        self._lock = threading.RLock()
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has store version {version}; this alreid reads version {SCHEMA_VERSION}")

    # plumbing -------------------------------------------------------------------------------------------
    def _tx(self, statements: Iterable[tuple[str, tuple]]) -> list[sqlite3.Cursor]:
        """Run statements in one committed transaction."""
        with self._lock:
            out = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    out.append(self._db.execute(sql, args))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return out

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # meta -----------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._tx([("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (key, value))])

    # batches --------------------------------------------------------------------------------------------
    def add_batch(self, cycle: int, pairs: np.ndarray, image_ids: np.ndarray, why: list[dict[str, Any]]) -> None:
        """Store the sampler's batch of cycle ``cycle`` (pool indices, image ids per pool index)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if self.batch(cycle):
            raise StoreError(f"cycle {cycle} already has a stored batch")
        stmts = [("INSERT INTO pairs(cycle, pos, u, v, image_u, image_v, why) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (int(cycle), k, int(u), int(v), str(image_ids[u]), str(image_ids[v]), json.dumps(why[k])))
                 for k, (u, v) in enumerate(pairs)]
        stmts.append(("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                      (f"batch_{int(cycle)}_size", str(len(pairs)))))
        self._tx(stmts)

    def has_batch(self, cycle: int) -> bool:
        return self.get_meta(f"batch_{int(cycle)}_size") is not None

    def batch(self, cycle: int) -> list[Pair]:
        rows = self._rows("SELECT pair_id, cycle, pos, u, v, image_u, image_v, why FROM pairs WHERE cycle = ? "
                          "ORDER BY pos", (int(cycle),))
        return [Pair(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def pair(self, pair_id: int) -> Pair | None:
        rows = self._rows("SELECT pair_id, cycle, pos, u, v, image_u, image_v, why FROM pairs WHERE pair_id = ?",
                          (int(pair_id),))
        return Pair(*rows[0][:7], json.loads(rows[0][7])) if rows else None

    def all_pairs(self) -> list[Pair]:
        rows = self._rows("SELECT pair_id, cycle, pos, u, v, image_u, image_v, why FROM pairs ORDER BY cycle, pos")
        return [Pair(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    # answers --------------------------------------------------------------------------------------------
    _ANSWER_COLS = "answer_id, pair_id, cycle, u, v, answer, annotator, answered_at, seconds"

    def answers(self, *, cycle: int | None = None) -> list[Answer]:
        """Active answers in the order given (all cycles, or one)."""
        sql = f"SELECT {self._ANSWER_COLS} FROM answers WHERE undone_at IS NULL"
        args: tuple = ()
        if cycle is not None:
            sql += " AND cycle = ?"
            args = (int(cycle),)
        return [Answer(*r) for r in self._rows(sql + " ORDER BY answer_id", args)]

    def answer_for(self, pair_id: int) -> Answer | None:
        rows = self._rows(f"SELECT {self._ANSWER_COLS} FROM answers WHERE undone_at IS NULL AND pair_id = ?",
                          (int(pair_id),))
        return Answer(*rows[0]) if rows else None

    def add_answer(self, pair: Pair, answer: str, annotator: str, *, seconds: float | None = None,
                   withdraw: Iterable[int] = (), now: float | None = None) -> int:
        """Store one answer (and withdraw earlier ones it replaces) in one committed transaction."""
        if answer not in ANSWERS:
            raise StoreError(f"answer must be one of {', '.join(ANSWERS)}; got {answer!r}")
        now = time.time() if now is None else float(now)
        stmts = [("UPDATE answers SET undone_at = ?, undone_why = ? WHERE answer_id = ? AND undone_at IS NULL",
                  (now, f"replaced by an answer to pair {pair.pair_id}", int(a))) for a in withdraw]
        stmts.append(("INSERT INTO answers(pair_id, cycle, u, v, answer, annotator, answered_at, seconds) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (pair.pair_id, pair.cycle, pair.u, pair.v, answer, annotator, now, seconds)))
        stmts.append(("DELETE FROM leases WHERE pair_id = ?", (pair.pair_id,)))
        return int(self._tx(stmts)[-2].lastrowid)

    def undo(self, answer_id: int, *, now: float | None = None, why: str = "undone") -> None:
        self._tx([("UPDATE answers SET undone_at = ?, undone_why = ? WHERE answer_id = ? AND undone_at IS NULL",
                   (time.time() if now is None else now, why, int(answer_id)))])

    def count_answers(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM answers WHERE undone_at IS NULL")[0][0])

    # leases ---------------------------------------------------------------------------------------------
    def leases(self, now: float) -> dict[int, tuple[str, float]]:
        """Unexpired leases: pair id -> (annotator, expiry)."""
        return {r[0]: (r[1], r[2]) for r in self._rows("SELECT pair_id, annotator, expires FROM leases WHERE expires > ?",
                                                      (float(now),))}

    def lease(self, pair_id: int, annotator: str, expires: float) -> None:
        self._tx([("INSERT INTO leases(pair_id, annotator, expires) VALUES (?, ?, ?) ON CONFLICT(pair_id) DO UPDATE "
                   "SET annotator = excluded.annotator, expires = excluded.expires", (int(pair_id), annotator, expires))])

    def release(self, annotator: str) -> None:
        self._tx([("DELETE FROM leases WHERE annotator = ?", (annotator,))])

    # checkpoints ----------------------------------------------------------------------------------------
    def save_checkpoint(self, cycle: int, constraints: "Any", trainer_state: dict[str, Any],
                        records: list[dict[str, Any]]) -> None:
        """The trial after ``cycle``: its constraints, trainer state and records (one transaction)."""
        import torch

        buf = io.BytesIO()
        torch.save(trainer_state, buf)
        cons = constraints.answers
        payload = json.dumps({"n": constraints.n, "u": cons.u.tolist(), "v": cons.v.tolist(),
                              "same": cons.same.tolist(), "cycle": cons.cycle.tolist()})
        self._tx([("INSERT OR REPLACE INTO checkpoints(cycle, finished_at, constraints, trainer, records) "
                   "VALUES (?, ?, ?, ?, ?)", (int(cycle), time.time(), payload, buf.getvalue(),
                                              json.dumps(records, default=_json_default)))])

    def last_checkpoint(self) -> "Any | None":
        """The newest checkpoint as an :class:`alreid.harness.trial.TrialState`, or None."""
        rows = self._rows("SELECT cycle, constraints, trainer, records FROM checkpoints ORDER BY cycle DESC LIMIT 1")
        if not rows:
            return None
        import torch

        from alreid.constraints import ConstraintStore
        from alreid.harness.trial import TrialState

        cycle, cons, trainer, records = rows[0]
        c = json.loads(cons)
        store = ConstraintStore(int(c["n"]))
        for u, v, s, cy in zip(c["u"], c["v"], c["same"], c["cycle"]):
            store.add(u, v, s, cycle=cy)
        state = torch.load(io.BytesIO(trainer), weights_only=False)
        return TrialState(cycle=int(cycle), constraints=store, trainer_state=state, records=json.loads(records))

    def records(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT records FROM checkpoints ORDER BY cycle DESC LIMIT 1")
        return json.loads(rows[0][0]) if rows else []


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
