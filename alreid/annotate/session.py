"""An annotation session: the trial loop with a person as the oracle, state kept in an AnnotationStore.

The session drives :class:`alreid.harness.trial.Trial` through its three steps (``next_pairs``,
``answer``, ``train_and_evaluate``); it adds no cycle logic of its own. What it adds is the part a
person needs: pairs served one at a time and leased to one annotator, answers checked against what
earlier answers imply, "not sure" answers, undo, and a batch that survives restarts.

Each pair of the open batch is in one of these states, recomputed from the store on demand:
``answered`` (a person answered it, "not sure" included), ``unsure_before`` (answered "not sure" in an
earlier cycle: never asked again), ``implied`` (the answers so far imply it, so nobody is asked) or
``open``. When no pair is open, **Next cycle** passes the batch to the trial in batch order (answers
and implied values; "not sure" pairs left out) exactly as the simulated oracle's answers would be.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import numpy as np

from alreid.annotate.store import ANSWERS, Answer, AnnotationStore, Pair, StoreError
from alreid.constraints import CL, ML, UNKNOWN, ConstraintStore
from alreid.errors import AlreidError

#: metadata columns never shown to an annotator (identity would give the answer away)
HIDDEN_COLUMNS = {"identity", "path", "image_id"}


class SessionError(AlreidError):
    """A request the session cannot honour now; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 409, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or {}


class Contradiction(SessionError):
    """An answer contradicts what earlier answers imply; ``detail['earlier']`` lists those answers."""


@dataclass
class Resolution:
    """One pair of the open batch and how it stands."""

    pair: Pair
    state: str  # answered | unsure_before | implied | open
    answer: str | None  # same / different / unsure (answered), same / different (implied)
    by: Answer | None = None


def live_constraints(n: int, answers: list[Answer], skip: set[int] = frozenset()) -> ConstraintStore:
    """The constraint store of the active same/different answers, in the order given."""
    store = ConstraintStore(n)
    for a in answers:
        if a.answer != "unsure" and a.answer_id not in skip:
            store.add(a.u, a.v, a.answer == "same", cycle=a.cycle)
    return store


def resolve_batch(batch: list[Pair], answers: list[Answer], live: ConstraintStore) -> list[Resolution]:
    """How each pair of ``batch`` stands given all active ``answers`` and their constraint store."""
    if not batch:
        return []
    cycle = batch[0].cycle
    by_pair = {a.pair_id: a for a in answers}
    unsure_before = {(a.u, a.v) for a in answers if a.answer == "unsure" and a.cycle < cycle}
    out = []
    for p in batch:
        a = by_pair.get(p.pair_id)
        if a is not None:
            out.append(Resolution(p, "answered", a.answer, a))
        elif (p.u, p.v) in unsure_before:
            out.append(Resolution(p, "unsure_before", "unsure"))
        else:
            code = live.implied(p.u, p.v)
            out.append(Resolution(p, "open", None) if code == UNKNOWN
                       else Resolution(p, "implied", "same" if code == ML else "different"))
    return out


def witnesses(answers: list[Answer], u: int, v: int) -> list[Answer]:
    """The earlier answers that imply a relation between u and v: a must-link path, or one through a cannot-link.

    Breadth-first search over the must-link answers gives a shortest chain u ~ ... ~ v; for an implied
    cannot-link it finds u ~ ... ~ a, a !~ b, b ~ ... ~ v with the fewest must-link steps on either side.
    """
    ml: dict[int, list[tuple[int, Answer]]] = {}
    cls: list[Answer] = []
    for a in answers:
        if a.answer == "same":
            ml.setdefault(a.u, []).append((a.v, a))
            ml.setdefault(a.v, []).append((a.u, a))
        elif a.answer == "different":
            cls.append(a)

    def bfs(src: int) -> dict[int, tuple[int, Answer] | None]:
        prev: dict[int, tuple[int, Answer] | None] = {src: None}
        queue = deque([src])
        while queue:
            x = queue.popleft()
            for y, a in ml.get(x, ()):
                if y not in prev:
                    prev[y] = (x, a)
                    queue.append(y)
        return prev

    def path(prev: dict[int, tuple[int, Answer] | None], x: int) -> list[Answer]:
        out = []
        while prev[x] is not None:
            x, a = prev[x]
            out.append(a)
        return out

    from_u = bfs(u)
    if v in from_u:
        return path(from_u, v)[::-1]
    from_v = bfs(v)
    best: list[Answer] | None = None
    for c in cls:
        for a_end, b_end in ((c.u, c.v), (c.v, c.u)):
            if a_end in from_u and b_end in from_v:
                chain = path(from_u, a_end)[::-1] + [c] + path(from_v, b_end)
                if best is None or len(chain) < len(best):
                    best = chain
    return best or []


def why_text(why: dict[str, Any], method: str) -> str:
    """One sentence for the annotator: which pool the pair came from and what the two clusterings think."""
    pool = why.get("pool")
    if pool is None:
        return f"Chosen by the {method!r} sampler."
    ru, rv = why.get("region_u"), why.get("region_v")
    a = "the same animal" if why.get("same_a") else "different animals"
    b = "the same animal" if why.get("same_b") else "different animals"
    views = f"DBSCAN (view A) says {a}; FINCH (view B) says {b}."
    if pool == "over":
        where = f"regions {ru} and {rv}" if ru != rv else f"region {ru}"
        return (f"Over-segmentation check: the most central images of uncertain {where}, which look alike. "
                f"Is one animal split in two? {views}")
    if pool == "under":
        return (f"Under-segmentation check: the closest pair across two clusters that the other clustering "
                f"joins (region {ru}). Are two animals merged? {views}")
    return f"Both pools chose this pair (regions {ru} and {rv}). {views}"


def _finite(x: Any) -> Any:
    """JSON-safe value: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class Session:
    """The trial, its dataset and the store behind one ``alreid annotate`` server."""

    def __init__(self, store: AnnotationStore, cfg: Any, *, dataset: Any = None, lease_seconds: float = 300.0,
                 read_only: bool = False, clock: Callable[[], float] = time.time,
                 log: Callable[[str], None] = lambda s: print(s, flush=True)) -> None:
        self.store = store
        self.cfg = cfg
        self.lease_seconds = float(lease_seconds)
        self.read_only = read_only
        self.clock = clock
        self.log = log
        self._dataset = dataset
        self._lock = threading.RLock()
        self._live: ConstraintStore | None = None
        self.trial: Any = None
        self.training: dict[str, Any] = {"running": False, "stage": "", "fraction": 0.0, "error": None}
        self._thread: threading.Thread | None = None

    # start-up -------------------------------------------------------------------------------------------
    def start(self) -> "Session":
        """Check the store matches the settings, build the trial, resume or start cycle 0, make sure a batch exists."""
        from alreid.datasets.base import load_dataset
        from alreid.harness.trial import Trial

        settings = self.cfg.model_dump_json()
        stored = self.store.get_meta("trial_config")
        if stored is not None and stored != settings:
            import json

            old, new = json.loads(stored), json.loads(settings)
            diff = ", ".join(f"{k}: {old.get(k)!r} (store) vs {new.get(k)!r} (now)"
                             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
            raise StoreError(f"{self.store.path} was started with other settings ({diff}); run the same command "
                             "as before, or pass a new --store")
        if self._dataset is None:
            self._dataset = load_dataset(self.cfg.dataset, seed=self.cfg.protocol.split_seed)
        self.trial = trial = Trial(self.cfg, self._dataset)
        self.pool_image_ids = self._dataset.metadata["image_id"].to_numpy()[trial.train_idx]
        if stored is None:
            self.store.set_meta("trial_config", settings)
            self.store.set_meta("n", str(trial.n))
        elif self.store.get_meta("n") != str(trial.n):
            raise StoreError(f"{self.store.path} holds a pool of {self.store.get_meta('n')} images but the dataset "
                             f"now gives {trial.n}; the images changed, so pass a new --store")
        state = self.store.last_checkpoint()
        if state is not None:
            trial.restore(state)
            if self.store.get_meta("constraints_dirty") == "1":
                self._rebuild_constraints()
            self.log(f"resumed after cycle {state.cycle}: {self.store.count_answers()} answers stored")
        else:
            self.log("cycle 0: evaluating the starting embeddings")
            trial.train_and_evaluate()
            self.store.save_checkpoint(0, trial.constraints, trial.trainer.state_dict(), trial.records)
        self._ensure_batch()
        self._image_rows = {str(i): k for k, i in enumerate(self._dataset.metadata["image_id"].to_numpy())}
        return self

    @property
    def dataset(self) -> Any:
        return self._dataset

    @property
    def cycle(self) -> int:
        """The open cycle (the one whose batch is being answered)."""
        return int(self.trial.next_cycle)

    @property
    def finished(self) -> bool:
        return self.cycle > self.cfg.cycles

    def _ensure_batch(self) -> None:
        """Store the open cycle's batch if it is not stored yet (a stored one is never recomputed)."""
        if self.finished or self.store.has_batch(self.cycle):
            return
        self.log(f"cycle {self.cycle}: choosing pairs with {self.cfg.method!r}")
        pairs = self.trial.next_pairs()
        explain = getattr(self.trial.sampler, "explain_", None) or {}
        why = [{k: _finite(v[t]) for k, v in explain.items()} if explain and len(explain.get("pool", ())) == len(pairs)
               else {} for t in range(len(pairs))]
        self.store.add_batch(self.cycle, pairs, self.pool_image_ids, why)
        self.log(f"cycle {self.cycle}: {len(pairs)} pairs to answer")

    def _rebuild_constraints(self) -> None:
        """After earlier cycles' answers were withdrawn: the trial's constraints from the active answers."""
        done = [a for a in self.store.answers() if a.cycle < self.cycle]
        self.trial.constraints = live_constraints(self.trial.n, done)
        self.store.set_meta("constraints_dirty", "0")

    # reading --------------------------------------------------------------------------------------------
    def live(self) -> ConstraintStore:
        with self._lock:
            if self._live is None:
                self._live = live_constraints(self.trial.n, self.store.answers())
            return self._live

    def resolution(self) -> list[Resolution]:
        with self._lock:
            return resolve_batch(self.store.batch(self.cycle), self.store.answers(), self.live())

    def state(self, res: list[Resolution] | None = None) -> str:
        if self.training["running"]:
            return "training"
        if self.finished:
            return "finished"
        res = self.resolution() if res is None else res
        return "annotating" if any(r.state == "open" for r in res) else "batch_done"

    def image_info(self, image_id: str) -> dict[str, Any]:
        row = self._image_rows[str(image_id)]
        meta = self._dataset.metadata.iloc[row]
        path = str(meta["path"]) if "path" in meta.index else ""
        shown = {str(k): _finite(v) for k, v in meta.items() if k not in HIDDEN_COLUMNS and not _is_missing(v)}
        return {"image_id": str(image_id), "url": f"api/image/{quote(str(image_id), safe='')}",
                "file": Path(path).name if path else "", "meta": shown}

    def image_roots(self) -> list[Path]:
        """Folders a relative ``path`` may be relative to: the dataset's, and for features written by
        ``alreid features`` the image folder they came from (``image_root`` in features.json)."""
        if getattr(self, "_roots", None) is None:
            roots = []
            root = self._dataset.root
            if root is not None:
                roots.append(Path(root))
                info = Path(root) / "features.json"
                if info.is_file():
                    import json

                    try:
                        image_root = json.loads(info.read_text()).get("image_root")
                    except (OSError, ValueError):
                        image_root = None
                    if image_root:
                        roots.append(Path(image_root))
            self._roots = roots
        return self._roots

    def image_file(self, image_id: str) -> Path:
        """The file of an image named by its id (the only way a client names an image)."""
        row = self._image_rows.get(str(image_id))
        if row is None:
            raise SessionError(f"no image with id {image_id!r}", 404)
        meta = self._dataset.metadata
        if "path" not in meta.columns:
            raise SessionError(f"dataset {self._dataset.name!r} has no image files (no path column)", 404)
        p = Path(str(meta["path"].iloc[row]))
        for f in [p] if p.is_absolute() else [r / p for r in self.image_roots()]:
            if f.is_file():
                return f
        raise SessionError(f"the file of image {image_id!r} is missing", 404)

    def describe(self, p: Pair) -> dict[str, Any]:
        return {"pair_id": p.pair_id, "cycle": p.cycle, "position": p.pos,
                "images": [self.image_info(p.image_u), self.image_info(p.image_v)],
                "why": {**p.why, "text": why_text(p.why, self.cfg.method)}}

    def status(self) -> dict[str, Any]:
        with self._lock:
            res = [] if self.finished else self.resolution()
            now = self.clock()
            leases = self.store.leases(now)
            count = {s: sum(r.state == s for r in res) for s in ("answered", "implied", "unsure_before", "open")}
            records = [{k: _finite(v) for k, v in r.items()} for r in self.trial.records]
            return {"cycle": self.cycle, "cycles": self.cfg.cycles, "state": self.state(res),
                    "batch_size": len(res), "answered": count["answered"], "implied": count["implied"],
                    "unsure_before": count["unsure_before"], "remaining": count["open"],
                    "leased": sum(1 for r in res if r.state == "open" and r.pair.pair_id in leases),
                    "total_answered": self.store.count_answers(), "implied_total": self.live_implied_total(),
                    "training": dict(self.training), "records": records, "evaluates": bool(self.trial.evaluates),
                    "read_only": self.read_only, "method": self.cfg.method, "trainer": self.cfg.trainer,
                    "dataset": self._dataset.name}

    def live_implied_total(self) -> int:
        """Pairs of all batches the answers settled for free (implied, so nobody was asked)."""
        answered = {a.pair_id for a in self.store.answers()}
        live = self.live()
        pairs = [p for p in self.store.all_pairs() if p.pair_id not in answered]
        if not pairs:
            return 0
        return int(np.count_nonzero(live.implied_many(np.array([[p.u, p.v] for p in pairs]))))

    def answers_view(self) -> list[dict[str, Any]]:
        """Every active answer with its images (the read-only review)."""
        out = []
        for a in self.store.answers():
            p = self.store.pair(a.pair_id)
            out.append({"answer_id": a.answer_id, "pair_id": a.pair_id, "cycle": a.cycle, "answer": a.answer,
                        "annotator": a.annotator, "answered_at": a.answered_at,
                        "images": [self.image_info(p.image_u), self.image_info(p.image_v)]})
        return out

    # serving --------------------------------------------------------------------------------------------
    def next_pair(self, annotator: str) -> dict[str, Any]:
        """The pair this annotator should answer now, leased to them; or why there is none."""
        annotator = _name(annotator)
        with self._lock:
            if self.read_only:
                return {"pair": None, "state": "read_only"}
            res = self.resolution()
            state = self.state(res)
            if state != "annotating":
                return {"pair": None, "state": state}
            now = self.clock()
            leases = self.store.leases(now)
            open_ = [r.pair for r in res if r.state == "open"]
            mine = [p for p in open_ if leases.get(p.pair_id, ("",))[0] == annotator]
            free = [p for p in open_ if p.pair_id not in leases]
            pick = mine[0] if mine else free[0] if free else None
            if pick is None:
                return {"pair": None, "state": "waiting"}  # everything left is leased to others
            self.store.lease(pick.pair_id, annotator, now + self.lease_seconds)
            return {"pair": self.describe(pick), "state": state, "lease_expires": now + self.lease_seconds}

    def answer(self, pair_id: int, answer: str, annotator: str, *, seconds: float | None = None,
               withdraw: list[int] | None = None) -> dict[str, Any]:
        """Store one answer, committed before returning; refuses contradictions and others' leases."""
        annotator = _name(annotator)
        answer = str(answer).strip().lower()
        if answer not in ANSWERS:
            raise SessionError(f"answer must be one of {', '.join(ANSWERS)}; got {answer!r}", 422)
        with self._lock:
            self._writable()
            pair = self.store.pair(int(pair_id))
            if pair is None:
                raise SessionError(f"no pair with id {pair_id}", 404)
            if pair.cycle != self.cycle:
                raise SessionError(f"pair {pair_id} belongs to cycle {pair.cycle}; cycle {self.cycle} is open")
            if self.training["running"]:
                raise SessionError("the next cycle is being trained; answers are taken again when it is done")
            done = self.store.answer_for(pair.pair_id)
            if done is not None:
                raise SessionError(f"pair {pair_id} is already answered ({done.answer!r} by {done.annotator}); "
                                   "undo that answer first")
            holder = self.store.leases(self.clock()).get(pair.pair_id)
            if holder is not None and holder[0] != annotator:
                raise SessionError(f"pair {pair_id} is leased to {holder[0]} until they answer or the lease ends")
            active = self.store.answers()
            ids = {a.answer_id: a for a in active}
            withdraw = [int(w) for w in (withdraw or [])]
            unknown = [w for w in withdraw if w not in ids]
            if unknown:
                raise SessionError(f"answers {unknown} are not active answers and cannot be withdrawn", 422)
            if answer != "unsure":
                kept = [a for a in active if a.answer_id not in set(withdraw)]
                live = live_constraints(self.trial.n, kept)
                code = live.implied(pair.u, pair.v)
                if code == (CL if answer == "same" else ML):
                    earlier = witnesses(kept, pair.u, pair.v)
                    implied = "same" if code == ML else "different"
                    raise Contradiction(
                        f"answering {answer!r} contradicts {len(earlier)} earlier answer(s) that imply {implied!r}; "
                        "keep the earlier answers, or withdraw them to keep this one", 409,
                        {"implied": implied, "pair_id": pair.pair_id,
                         "earlier": [self._answer_view(a) for a in earlier]})
            now = self.clock()
            answer_id = self.store.add_answer(pair, answer, annotator, seconds=seconds, withdraw=withdraw, now=now)
            if any(ids[w].cycle < self.cycle for w in withdraw):
                self.store.set_meta("constraints_dirty", "1")
            self._live = None
            return {"answer_id": answer_id, "withdrawn": withdraw}

    def undo(self, annotator: str) -> dict[str, Any]:
        """Withdraw this annotator's latest answer of the open cycle; its pair is served to them next."""
        annotator = _name(annotator)
        with self._lock:
            self._writable()
            if self.training["running"]:
                raise SessionError("the next cycle is being trained; nothing can be undone now")
            mine = [a for a in self.store.answers(cycle=self.cycle) if a.annotator == annotator]
            if not mine:
                raise SessionError(f"{annotator} has no answer in cycle {self.cycle} to undo "
                                   "(answers of finished cycles are kept)")
            last = mine[-1]
            now = self.clock()
            self.store.undo(last.answer_id, now=now)
            self.store.release(annotator)
            self.store.lease(last.pair_id, annotator, now + self.lease_seconds)
            self._live = None
            return {"undone": self._answer_view(last)}

    def release(self, annotator: str) -> None:
        """Give back the pairs leased to this name (the page renames its annotator)."""
        with self._lock:
            if not self.read_only:
                self.store.release(_name(annotator))

    def _answer_view(self, a: Answer) -> dict[str, Any]:
        p = self.store.pair(a.pair_id)
        return {"answer_id": a.answer_id, "pair_id": a.pair_id, "cycle": a.cycle, "answer": a.answer,
                "annotator": a.annotator, "images": [self.image_info(p.image_u), self.image_info(p.image_v)]}

    def _writable(self) -> None:
        if self.read_only:
            raise SessionError("this server is read-only (--read-only); it shows answers but takes none", 403)

    # the next cycle -------------------------------------------------------------------------------------
    def next_cycle(self, *, wait: bool = False) -> dict[str, Any]:
        """Refine, train and evaluate with the answered batch, in a background thread; then the next batch."""
        with self._lock:
            self._writable()
            state = self.state()
            if state != "batch_done":
                raise SessionError({"annotating": "the batch still has unanswered pairs",
                                    "training": "the next cycle is already being trained",
                                    "finished": f"all {self.cfg.cycles} cycles are done"}.get(state, state))
            self.training = {"running": True, "stage": "starting", "fraction": 0.0, "error": None,
                             "cycle": self.cycle, "started": time.time()}
            self._thread = threading.Thread(target=self._train, name="alreid-next-cycle", daemon=True)
            self._thread.start()
        if wait:
            self._thread.join()
        return self.status()

    def _progress(self, stage: str, fraction: float) -> None:
        self.training.update(stage=stage, fraction=float(fraction))
        self.log(f"cycle {self.cycle}: {stage}")

    def _train(self) -> None:
        trial = self.trial
        try:
            cycle = self.cycle
            res = self.resolution()
            batch = np.array([[r.pair.u, r.pair.v] for r in res], dtype=np.int64).reshape(-1, 2)
            keep = [r for r in res if r.answer in ("same", "different")]
            if self.store.get_meta("constraints_dirty") == "1":
                self._rebuild_constraints()
            self._progress("preparing the cycle", 0.05)
            pending = trial.next_pairs()
            if not np.array_equal(np.sort(pending, axis=1), np.sort(batch, axis=1)):
                self.log(f"cycle {cycle}: note: the recomputed batch differs from the stored one; the stored one is used")
            trial.answer(np.array([[r.pair.u, r.pair.v] for r in keep], dtype=np.int64).reshape(-1, 2),
                         np.array([r.answer == "same" for r in keep], dtype=bool))
            self._progress(f"refining ({self.cfg.refine}) and training {self.cfg.trainer!r}"
                           + (", then evaluating" if trial.evaluates else ""), 0.2)
            trial.train_and_evaluate()
            self.store.save_checkpoint(cycle, trial.constraints, trial.trainer.state_dict(), trial.records)
            self._progress("choosing the next pairs", 0.9)
            with self._lock:
                self._live = None
                self._ensure_batch()
            self.training.update(running=False, stage="done", fraction=1.0)
        except Exception as exc:  # shown on the page; the batch and its answers stay stored, so it can be retried
            self.log(traceback.format_exc())
            try:  # back to the last finished cycle, so a retry starts clean
                trial.restore(self.store.last_checkpoint())
            except Exception:  # noqa: BLE001 - the first error is the one to show
                pass
            self.training.update(running=False, stage="failed", error=f"{type(exc).__name__}: {exc}")


def _name(annotator: Any) -> str:
    name = str(annotator or "").strip()[:64]
    return name or "anonymous"


def _is_missing(v: Any) -> bool:
    try:
        return bool(v != v) or v is None  # NaN
    except (TypeError, ValueError):
        return False
