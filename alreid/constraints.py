"""Must-link / cannot-link annotations and what they imply.

Must-link answers are kept in a union-find, so transitivity is free: (a~b, b~c) implies a~c.
Cannot-link answers are kept between must-link components, so (a~b, b!~c) implies a!~c.
An answer contradicting what is already implied is refused with an error naming both pairs,
because a human annotator can contradict themselves and silently keeping both would poison NP3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from alreid.errors import ConstraintConflictError, DatasetError

ML = 1
CL = -1
UNKNOWN = 0


class ConstraintStore:
    """Pairwise annotations over ``n`` items with transitive must-link closure."""

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError("n must be non-negative")
        self.n = int(n)
        self._parent = np.arange(self.n, dtype=np.int64)
        self._size = np.ones(self.n, dtype=np.int64)
        # component root -> set of component roots it cannot link to
        self._cl: dict[int, set[int]] = {}
        # component root -> one answered pair that created each CL edge (for error messages)
        self._cl_witness: dict[tuple[int, int], tuple[int, int]] = {}
        self._answers: list[tuple[int, int, bool, int]] = []  # (u, v, same, cycle)
        self._asked: set[tuple[int, int]] = set()
        self._ml_witness: dict[int, list[tuple[int, int]]] = {}

    # union-find ---------------------------------------------------------------------------------
    def find(self, u: int) -> int:
        parent = self._parent
        root = u
        while parent[root] != root:
            root = parent[root]
        while parent[u] != root:  # path compression
            parent[u], u = root, parent[u]
        return int(root)

    def roots(self) -> np.ndarray:
        """Must-link component id (its root) of every item, vectorised."""
        parent = self._parent
        r = parent.copy()
        while True:
            nxt = parent[r]
            if np.array_equal(nxt, r):
                return r
            r = nxt

    # queries ------------------------------------------------------------------------------------
    def _check(self, u: int, v: int) -> tuple[int, int]:
        u, v = int(u), int(v)
        if not (0 <= u < self.n and 0 <= v < self.n):
            raise IndexError(f"pair ({u}, {v}) out of range for {self.n} items")
        if u == v:
            raise ValueError(f"pair ({u}, {v}) joins an item with itself")
        return (u, v) if u < v else (v, u)

    def implied(self, u: int, v: int) -> int:
        """ML (1), CL (-1) or UNKNOWN (0) for the pair, taking transitivity into account."""
        u, v = self._check(u, v)
        ru, rv = self.find(u), self.find(v)
        if ru == rv:
            return ML
        if rv in self._cl.get(ru, ()):
            return CL
        return UNKNOWN

    def implied_many(self, pairs: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`implied` for an (m, 2) array; returns int8 codes."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) == 0:
            return np.zeros(0, dtype=np.int8)
        r = self.roots()
        ru, rv = r[pairs[:, 0]], r[pairs[:, 1]]
        out = np.where(ru == rv, ML, UNKNOWN).astype(np.int8)
        if self._cl:
            cl_keys = self._cl_key_array()
            a, b = np.minimum(ru, rv), np.maximum(ru, rv)
            key = a * np.int64(self.n) + b
            out[np.isin(key, cl_keys) & (ru != rv)] = CL
        return out

    def _cl_key_array(self) -> np.ndarray:
        keys = [min(a, b) * self.n + max(a, b) for a, nb in self._cl.items() for b in nb]
        return np.unique(np.asarray(keys, dtype=np.int64))

    def is_known(self, pairs: np.ndarray) -> np.ndarray:
        """True where the pair's answer is already annotated or implied."""
        return self.implied_many(pairs) != UNKNOWN

    def was_asked(self, u: int, v: int) -> bool:
        return self._check(u, v) in self._asked

    # updates ------------------------------------------------------------------------------------
    def add(self, u: int, v: int, same: bool, *, cycle: int = 0) -> None:
        """Record one answer; raises :class:`ConstraintConflictError` if it contradicts the store."""
        u, v = self._check(u, v)
        same = bool(same)
        current = self.implied(u, v)
        if current == (CL if same else ML):
            raise ConstraintConflictError(
                f"answer {'must-link' if same else 'cannot-link'} for pair ({u}, {v}) contradicts "
                f"{'cannot-link' if same else 'must-link'} implied by {self._explain(u, v, current)}; "
                "re-check both annotations and remove the wrong one"
            )
        self._asked.add((u, v))
        self._answers.append((u, v, same, int(cycle)))
        if current != UNKNOWN:
            return  # consistent and already implied: nothing changes
        ru, rv = self.find(u), self.find(v)
        if same:
            if self._size[ru] < self._size[rv]:
                ru, rv = rv, ru
            self._parent[rv] = ru
            self._size[ru] += self._size[rv]
            self._ml_witness.setdefault(ru, []).extend(self._ml_witness.pop(rv, []))
            self._ml_witness[ru].append((u, v))
            moved = self._cl.pop(rv, set())
            for other in moved:
                self._cl[other].discard(rv)
                self._cl[other].add(ru)
                w = self._cl_witness.pop((min(rv, other), max(rv, other)), (u, v))
                self._cl_witness.setdefault((min(ru, other), max(ru, other)), w)
            self._cl.setdefault(ru, set()).update(moved)
        else:
            self._cl.setdefault(ru, set()).add(rv)
            self._cl.setdefault(rv, set()).add(ru)
            self._cl_witness[(min(ru, rv), max(ru, rv))] = (u, v)

    def add_many(self, pairs: np.ndarray, same: np.ndarray, *, cycle: int = 0) -> None:
        for (u, v), s in zip(np.asarray(pairs).reshape(-1, 2), np.asarray(same).reshape(-1)):
            self.add(int(u), int(v), bool(s), cycle=cycle)

    def _explain(self, u: int, v: int, code: int) -> str:
        ru, rv = self.find(u), self.find(v)
        if code == ML:
            pairs = self._ml_witness.get(ru, [])
            shown = ", ".join(f"({a}, {b})" for a, b in pairs[:5])
            more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
            return f"must-link answers {shown}{more}"
        a, b = self._cl_witness.get((min(ru, rv), max(ru, rv)), (u, v))
        return f"cannot-link answer ({a}, {b}) together with the must-links around it"

    # views --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._answers)

    @property
    def answers(self) -> pd.DataFrame:
        """Every answer in the order given: columns u, v, same, cycle."""
        if not self._answers:
            return pd.DataFrame({"u": np.zeros(0, np.int64), "v": np.zeros(0, np.int64),
                                 "same": np.zeros(0, bool), "cycle": np.zeros(0, np.int64)})
        u, v, s, c = zip(*self._answers)
        return pd.DataFrame({"u": np.asarray(u, np.int64), "v": np.asarray(v, np.int64),
                             "same": np.asarray(s, bool), "cycle": np.asarray(c, np.int64)})

    def ml_pairs(self) -> np.ndarray:
        """Answered must-link pairs as an (m, 2) int64 array."""
        a = self.answers
        return a.loc[a.same, ["u", "v"]].to_numpy(np.int64).reshape(-1, 2)

    def cl_pairs(self) -> np.ndarray:
        """Answered cannot-link pairs as an (m, 2) int64 array."""
        a = self.answers
        return a.loc[~a.same, ["u", "v"]].to_numpy(np.int64).reshape(-1, 2)

    def in_must_link(self) -> np.ndarray:
        """Boolean mask of items whose must-link component has more than one member."""
        return self._size[self.roots()] > 1

    # persistence --------------------------------------------------------------------------------
    def to_parquet(self, path: str | Path) -> None:
        df = self.answers
        df.attrs = {}
        table_meta = {"n": str(self.n)}
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"alreid.n": table_meta["n"].encode()})
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)

    @classmethod
    def from_parquet(cls, path: str | Path, n: int | None = None) -> "ConstraintStore":
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise DatasetError(f"constraint file {path} does not exist")
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        stored_n = int(meta[b"alreid.n"]) if b"alreid.n" in meta else None
        if n is None:
            if stored_n is None:
                raise DatasetError(f"{path} does not record the number of items; pass n")
            n = stored_n
        elif stored_n is not None and stored_n != n:
            raise DatasetError(f"{path} holds constraints over {stored_n} items, expected {n}")
        store = cls(n)
        df = table.to_pandas()
        for u, v, s, c in df[["u", "v", "same", "cycle"]].itertuples(index=False):
            store.add(int(u), int(v), bool(s), cycle=int(c))
        return store
