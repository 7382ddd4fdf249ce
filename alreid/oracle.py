"""Annotators that answer "same individual?" for a pair of images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from alreid.datasets.base import UNKNOWN_IDENTITY
from alreid.errors import AlreidError

if TYPE_CHECKING:
    import pandas as pd


class BudgetExceededError(AlreidError):
    """More pairs were asked than the budget allows."""


class RepeatedQueryError(AlreidError):
    """A pair was asked twice; the harness must never waste budget on a known answer."""


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _pair_uniform(lo: np.ndarray, hi: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per unordered pair, a pure function of (seed, pair)."""
    with np.errstate(over="ignore"):
        h = _splitmix64(lo.astype(np.uint64) * np.uint64(0x100000001B3) ^ hi.astype(np.uint64))
        h = _splitmix64(h ^ np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def oracle_identities(identities: np.ndarray) -> np.ndarray:
    """Identities as the simulated annotator sees them: every 'unknown' image is its own individual."""
    ids = np.asarray(identities).astype(object).copy()
    unknown = np.flatnonzero(ids == UNKNOWN_IDENTITY)
    ids[unknown] = [f"__unknown_{i}" for i in unknown]
    return ids


class _AskedPairs:
    """What both oracles keep of the pairs already asked: ``asked_`` (u < v) and ``n_queries_``."""

    asked_: set[tuple[int, int]]
    n_queries_: int

    def mark_asked(self, pairs: np.ndarray) -> None:
        """Record pairs answered earlier (a resumed trial), so they count and are never re-asked."""
        for u, v in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
            self.asked_.add((int(min(u, v)), int(max(u, v))))
        self.n_queries_ = len(self.asked_)


class SimulatedOracle(_AskedPairs):
    """Answers from ground-truth identities, counting every query against an optional budget.

    ``error_rate`` flips each answer with that probability, modelling a fallible annotator. Whether a
    pair is flipped depends only on (seed, pair), not on the order of questions, so a trial resumed
    from a checkpoint gets exactly the answers an uninterrupted one would have got. Asking a pair
    again is refused, never re-drawn.
    """

    def __init__(self, identities: np.ndarray, *, error_rate: float = 0.0, seed: int = 0,
                 budget: int | None = None) -> None:
        if not 0.0 <= error_rate < 0.5:
            raise AlreidError(f"oracle error_rate must be in [0, 0.5); got {error_rate}")
        self.identities = np.asarray(identities)
        self.error_rate = float(error_rate)
        self.seed = seed
        self.budget = budget
        self.asked_: set[tuple[int, int]] = set()
        self.n_queries_ = 0
        self.n_flipped_ = 0


    def query(self, pairs: np.ndarray) -> np.ndarray:
        """Answers (True = same individual) for an (m, 2) array of index pairs."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if self.budget is not None and self.n_queries_ + len(pairs) > self.budget:
            raise BudgetExceededError(
                f"{len(pairs)} more queries would exceed the oracle budget of {self.budget} "
                f"({self.n_queries_} already used)")
        keys = [(int(min(u, v)), int(max(u, v))) for u, v in pairs]
        seen = set()
        for key in keys:
            if key in self.asked_ or key in seen:
                raise RepeatedQueryError(f"pair {key} was already asked; known answers are never re-queried")
            if key[0] == key[1]:
                raise AlreidError(f"pair {key} joins an image with itself")
            seen.add(key)
        truth = self.identities[pairs[:, 0]] == self.identities[pairs[:, 1]]
        if self.error_rate > 0:
            lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
            flip = _pair_uniform(lo, hi, self.seed) < self.error_rate
            self.n_flipped_ += int(flip.sum())
            truth = truth ^ flip
        self.asked_.update(keys)
        self.n_queries_ += len(pairs)
        return truth.astype(bool)


# replayed answers ---------------------------------------------------------------------------------
ANSWER_VALUES = ("same", "different", "unsure")


def parse_oracle_spec(spec: str) -> tuple[str, str | None, str]:
    """``"simulated"`` -> ("simulated", None, "error"); ``"replay:F?missing=simulate"`` -> ("replay", F, "simulate")."""
    spec = (spec or "").strip()
    if spec in ("", "simulated"):
        return "simulated", None, "error"
    kind, sep, rest = spec.partition(":")
    if kind != "replay" or not sep or not rest.strip():
        raise AlreidError(f"oracle must be 'simulated' or 'replay:FILE[?missing=simulate]'; got {spec!r}")
    path, _, query = rest.partition("?")
    missing = "error"
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "missing" or value not in ("error", "simulate"):
            raise AlreidError(f"replay oracle option {item!r} is not understood; use ?missing=simulate or ?missing=error")
        missing = value
    return "replay", path, missing


def read_answers(path: str | Path) -> pd.DataFrame:
    """An answers file (Parquet or CSV) as columns key_u, key_v (str), answer (same/different/unsure).

    Pairs are named by ``image_id_u``/``image_id_v`` when present (what ``alreid annotate export`` writes),
    else by training-pool positions ``u``/``v`` (what :meth:`ConstraintStore.to_parquet` writes). The answer is
    the ``answer`` column, or the boolean ``same`` column.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise AlreidError(f"answers file {path} does not exist; write one with 'alreid annotate export'")
    try:
        df = pd.read_csv(path) if path.suffix.lower() in (".csv", ".txt") else pd.read_parquet(path)
    except Exception as exc:
        raise AlreidError(f"cannot read answers file {path}: {exc}") from None
    if {"image_id_u", "image_id_v"} <= set(df.columns):
        ku, kv = df["image_id_u"], df["image_id_v"]
    elif {"u", "v"} <= set(df.columns):
        ku, kv = df["u"], df["v"]
    else:
        raise AlreidError(f"answers file {path} needs columns image_id_u, image_id_v (or u, v); "
                          f"found {', '.join(map(str, df.columns))}")
    if "answer" in df.columns:
        answer = df["answer"].astype(str).str.strip().str.lower()
        bad = sorted(set(answer) - set(ANSWER_VALUES))
        if bad:
            raise AlreidError(f"answers file {path}: column 'answer' may hold same, different or unsure; found {bad[:5]}")
    elif "same" in df.columns:
        if df["same"].isna().any():
            raise AlreidError(f"answers file {path} has empty 'same' values; write 'unsure' in an 'answer' column")
        answer = df["same"].map(lambda s: "same" if str(s).strip().lower() in ("true", "1") else "different")
    else:
        raise AlreidError(f"answers file {path} needs an 'answer' (same/different/unsure) or 'same' column")
    out = pd.DataFrame({"key_u": ku.astype(str).to_numpy(), "key_v": kv.astype(str).to_numpy(),
                        "answer": answer.to_numpy()})
    return out


class MissingAnswerError(AlreidError):
    """The replayed file has no answer for a pair the sampler chose."""


class ReplayOracle(_AskedPairs):
    """Answers pairs from a file of earlier (e.g. human) answers instead of ground truth.

    Pairs are looked up by image id (``keys[i]`` names pool item i), in either order. A pair the file
    does not hold is refused with :class:`MissingAnswerError`, or, with ``fallback``, answered by that
    simulated oracle and counted in ``n_simulated_``. After :meth:`query`, ``answered_`` is False where the
    file says "unsure": such a pair is not a constraint (the trial drops it), as in ``alreid annotate``.
    """

    def __init__(self, path: str | Path, keys: np.ndarray, *, fallback: SimulatedOracle | None = None) -> None:
        self.path = Path(path)
        self.keys = np.asarray(keys).astype(str)
        self.fallback = fallback
        table = read_answers(self.path)
        self.answers: dict[tuple[str, str], str] = {}
        for ku, kv, ans in table.itertuples(index=False):
            key = (ku, kv) if ku <= kv else (kv, ku)
            old = self.answers.get(key)
            if old is not None and old != ans:
                raise AlreidError(f"answers file {self.path} answers pair {key} both {old!r} and {ans!r}; keep one")
            self.answers[key] = ans
        self.asked_: set[tuple[int, int]] = set()
        self.n_queries_ = 0
        self.n_simulated_ = 0
        self.answered_: np.ndarray = np.zeros(0, dtype=bool)


    def query(self, pairs: np.ndarray) -> np.ndarray:
        """True = same individual; sets ``answered_`` (False for a replayed 'unsure')."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        out = np.zeros(len(pairs), dtype=bool)
        answered = np.ones(len(pairs), dtype=bool)
        missing: list[int] = []
        for t, (u, v) in enumerate(pairs):
            key = (int(min(u, v)), int(max(u, v)))
            if key in self.asked_:
                raise RepeatedQueryError(f"pair {key} was already asked; known answers are never re-queried")
            ku, kv = self.keys[u], self.keys[v]
            ans = self.answers.get((ku, kv) if ku <= kv else (kv, ku))
            if ans is None:
                missing.append(t)
            elif ans == "unsure":
                answered[t] = False
            else:
                out[t] = ans == "same"
        if missing:
            if self.fallback is None:
                u, v = pairs[missing[0]]
                raise MissingAnswerError(
                    f"{self.path} has no answer for {len(missing)} of the {len(pairs)} pairs asked, e.g. images "
                    f"{self.keys[u]} and {self.keys[v]}; annotate them ('alreid annotate') or use "
                    f"replay:{self.path}?missing=simulate")
            idx = np.asarray(missing)
            out[idx] = self.fallback.query(pairs[idx])
            self.n_simulated_ += len(idx)
        # a replayed 'not sure' is no constraint, so a later cycle may choose that pair again (as annotate does)
        self.asked_.update((int(min(u, v)), int(max(u, v))) for (u, v), ok in zip(pairs, answered) if ok)
        self.n_queries_ += len(pairs)
        self.answered_ = answered
        return out


def make_oracle(spec: str, identities: np.ndarray, *, keys: np.ndarray, error_rate: float = 0.0, seed: int = 0,
                truth_known: bool = True) -> SimulatedOracle | ReplayOracle:
    """The oracle a trial setting names: ``simulated`` or ``replay:FILE[?missing=simulate]``."""
    kind, path, missing = parse_oracle_spec(spec)
    simulated = SimulatedOracle(identities, error_rate=error_rate, seed=seed)
    if kind == "simulated":
        return simulated
    if missing == "simulate" and not truth_known:
        raise AlreidError(f"replay:{path}?missing=simulate needs identities to simulate from, and this dataset has "
                          "none; answer the missing pairs with 'alreid annotate'")
    return ReplayOracle(path, keys, fallback=simulated if missing == "simulate" else None)
