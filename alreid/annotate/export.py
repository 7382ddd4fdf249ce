"""``alreid annotate export``: the store's answers as a Parquet/CSV file in the constraint store's format.

Columns ``u, v, same, cycle`` are those of :meth:`alreid.constraints.ConstraintStore.to_parquet`
(training-pool positions; the file records ``alreid.n``), followed by ``answer`` (same / different /
unsure), ``source`` (annotator / implied / unsure before), ``image_id_u``, ``image_id_v``, ``annotator``,
``answered_at`` (UTC, ISO 8601) and ``seconds``. Every pair of every stored batch appears in batch order,
as the trial received it: implied pairs carry the implied answer, "not sure" pairs have an empty
``same``. This is what ``--oracle replay:FILE`` reads. ``constraints_only`` keeps only the four
constraint columns and drops "not sure" rows, so ``ConstraintStore.from_parquet`` loads the file.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from alreid.annotate.session import live_constraints, resolve_batch
from alreid.annotate.store import AnnotationStore, StoreError

SOURCES = {"answered": "annotator", "implied": "implied", "unsure_before": "unsure before"}


def answers_frame(store: AnnotationStore) -> pd.DataFrame:
    """One row per pair of every batch that is answered, implied, or was answered 'not sure' before."""
    n = store.get_meta("n")
    if n is None:
        raise StoreError(f"{store.path} holds no session yet; run 'alreid annotate --store {store.path}' first")
    answers = store.answers()
    live = live_constraints(int(n), answers)
    rows = []
    for cycle in sorted({p.cycle for p in store.all_pairs()}):
        for r in resolve_batch(store.batch(cycle), answers, live):
            if r.state == "open":
                continue
            a = r.by
            rows.append({"u": r.pair.u, "v": r.pair.v,
                         "same": None if r.answer == "unsure" else r.answer == "same", "cycle": cycle,
                         "answer": r.answer, "source": SOURCES[r.state],
                         "image_id_u": r.pair.image_u, "image_id_v": r.pair.image_v,
                         "annotator": a.annotator if a else None,
                         "answered_at": (datetime.fromtimestamp(a.answered_at, timezone.utc).isoformat() if a else None),
                         "seconds": a.seconds if a else None})
    cols = ["u", "v", "same", "cycle", "answer", "source", "image_id_u", "image_id_v", "annotator", "answered_at",
            "seconds"]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype({"u": "int64", "v": "int64", "same": "boolean", "cycle": "int64", "seconds": "float64"})


def export_answers(store_path: str | Path, out: str | Path, *, constraints_only: bool = False) -> pd.DataFrame:
    """Write the answers to ``out`` (.parquet or .csv); returns the frame written."""
    store_path, out = Path(store_path), Path(out)
    if not store_path.is_file():
        raise StoreError(f"annotation store {store_path} does not exist")
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise StoreError(f"--out must end in .parquet or .csv; got {out.name}")
    store = AnnotationStore(store_path)
    try:
        df = answers_frame(store)
        n = store.get_meta("n")
    finally:
        store.close()
    if constraints_only:
        df = df[df["answer"] != "unsure"][["u", "v", "same", "cycle"]].astype({"same": bool}).reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if suffix == ".csv":
        df.to_csv(tmp, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"alreid.n": str(n).encode()})
        pq.write_table(table, tmp)
    tmp.replace(out)
    return df
