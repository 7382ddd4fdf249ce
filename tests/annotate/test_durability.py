"""A server killed with SIGKILL loses nothing acknowledged, and resumes the same stored batch."""

from __future__ import annotations

import sqlite3

import httpx

from tests.annotate.helpers import Server


def batch_rows(store):
    with sqlite3.connect(store) as db:
        return db.execute("SELECT pair_id, cycle, pos, u, v, image_u, image_v FROM pairs ORDER BY pair_id").fetchall()


def test_sigkill_then_restart_resumes_the_same_batch(photos, tmp_path):
    store = tmp_path / "zoo.annotations.sqlite"
    args = ["--dataset", photos, "--method", "random", "--budget-pairs", "8", "--cycles", "2", "--store", str(store)]
    server = Server(args, tmp_path / "server1.log")
    try:
        st = server.wait_ready()
        assert st["cycle"] == 1 and st["remaining"] == 8
        answered = []
        for answer in ("same", "different", "unsure"):
            pair = httpx.get(server.url + "api/next", params={"annotator": "kim"}).json()["pair"]
            r = httpx.post(server.url + "api/answer",
                           json={"pair_id": pair["pair_id"], "answer": answer, "annotator": "kim"})
            assert r.status_code == 200, r.text
            answered.append((pair["pair_id"], answer))
        leased = httpx.get(server.url + "api/next", params={"annotator": "kim"}).json()["pair"]["pair_id"]
        before = batch_rows(store)
    finally:
        server.kill()  # right after the last acknowledged answer
    assert server.proc.returncode == -9

    server = Server(args, tmp_path / "server2.log")
    try:
        st = server.wait_ready()
        assert st["cycle"] == 1 and st["answered"] == 3 and st["remaining"] == 5
        assert batch_rows(store) == before  # the batch is the stored one, not recomputed
        with sqlite3.connect(store) as db:
            rows = db.execute("SELECT pair_id, answer, annotator FROM answers WHERE undone_at IS NULL "
                              "ORDER BY answer_id").fetchall()
        assert rows == [(p, a, "kim") for p, a in answered]
        nxt = httpx.get(server.url + "api/next", params={"annotator": "kim"}).json()["pair"]
        assert nxt["pair_id"] == leased  # the pair being looked at when the process died
        assert nxt["pair_id"] == min(p[0] for p in before if p[0] not in {a for a, _ in answered})
    finally:
        server.stop()
    log = (tmp_path / "server2.log").read_text()
    assert "resumed after cycle 0: 3 answers stored" in log and "choosing pairs" not in log
