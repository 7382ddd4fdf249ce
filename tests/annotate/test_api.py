"""The JSON API of ``alreid annotate`` through FastAPI's test client."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tests.annotate.conftest import Clock
from tests.annotate.helpers import true_identity


def take(client, annotator="ann"):
    r = client.get("/api/next", params={"annotator": annotator})
    assert r.status_code == 200, r.text
    return r.json()


def post(client, pair_id, answer, annotator="ann", **extra):
    return client.post("/api/answer", json={"pair_id": pair_id, "answer": answer, "annotator": annotator, **extra})


def find_pair(session, a, b):
    """Pair id of the open batch joining pool items a and b."""
    for p in session.store.batch(session.cycle):
        if {p.u, p.v} == {a, b}:
            return p.pair_id
    raise AssertionError(f"no pair ({a}, {b}) in the batch")


def test_answer_stored_and_counted(make_session, photos):
    s, c = make_session(photos)
    first = take(c)
    pid = first["pair"]["pair_id"]
    assert first["status"]["remaining"] == 10 and first["status"]["answered"] == 0
    r = post(c, pid, "same", seconds=2.5)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["answered"] == 1 and r.json()["status"]["remaining"] == 9
    # committed: a second connection to the file sees it
    row = sqlite3.connect(s.store.path).execute(
        "SELECT pair_id, answer, annotator, seconds, cycle FROM answers").fetchall()
    assert row == [(pid, "same", "ann", 2.5, 1)]
    assert post(c, pid, "different").status_code == 409  # already answered: undo first
    assert post(c, pid + 1, "maybe").status_code == 422
    assert post(c, 9999, "same").status_code == 404
    # the next pair is another one
    assert take(c)["pair"]["pair_id"] != pid


def test_undo_returns_the_pair_to_its_annotator(make_session, photos):
    s, c = make_session(photos)
    ids = []
    for answer in ("same", "different"):
        pid = take(c)["pair"]["pair_id"]
        ids.append(pid)
        assert post(c, pid, answer).status_code == 200
    r = c.post("/api/undo", json={"annotator": "ann"})
    assert r.status_code == 200 and r.json()["undone"]["pair_id"] == ids[1]
    assert r.json()["status"]["answered"] == 1
    assert take(c)["pair"]["pair_id"] == ids[1]  # served again, to the same person
    assert take(c, "bob")["pair"]["pair_id"] not in ids
    assert c.post("/api/undo", json={"annotator": "bob"}).status_code == 409  # bob answered nothing
    # the undone answer is kept in the store, flagged
    rows = sqlite3.connect(s.store.path).execute("SELECT pair_id, undone_at IS NOT NULL FROM answers").fetchall()
    assert rows == [(ids[0], 0), (ids[1], 1)]


def test_contradiction_shows_the_earlier_pairs_and_stores_nothing_until_chosen(make_session, tmp_path):
    from tests.annotate.helpers import make_photos

    # 5 photos, every one of the 10 pairs in the batch: a triangle a-b-c is sure to be there
    spec = make_photos(tmp_path / "tiny", identities=1, per_identity=5, unknown=True)
    s, c = make_session(spec, budget_pairs=10)
    assert len(s.store.batch(1)) == 10
    ab, bc, ac = find_pair(s, 0, 1), find_pair(s, 1, 2), find_pair(s, 0, 2)
    a1 = post(c, ab, "same").json()["answer_id"]
    a2 = post(c, bc, "same").json()["answer_id"]
    st = c.get("/api/status").json()
    assert st["implied"] == 1 and st["answered"] == 2  # (0, 2) follows: nobody is asked
    open_pairs = {r.pair.pair_id for r in s.resolution() if r.state == "open"}
    assert ac not in open_pairs and len(open_pairs) == 7
    assert take(c)["pair"]["pair_id"] in open_pairs
    before = s.store.count_answers()
    r = post(c, ac, "different")
    assert r.status_code == 409
    body = r.json()
    assert body["implied"] == "same"
    assert sorted(e["answer_id"] for e in body["earlier"]) == sorted([a1, a2])
    assert all(len(e["images"]) == 2 and e["images"][0]["url"].startswith("api/image/") for e in body["earlier"])
    assert s.store.count_answers() == before  # nothing stored silently
    # withdrawing only one of the two is enough here; keep the new answer
    r = post(c, ac, "different", withdraw=[a2])
    assert r.status_code == 200, r.text
    live = s.live()
    assert live.implied(0, 2) == -1 and live.implied(0, 1) == 1 and live.implied(1, 2) == -1  # a~b, a!~c => b!~c
    # answering the withdrawn pair the old way now contradicts (a~b, a!~c): the witnesses are those two answers
    r = post(c, bc, "same")
    assert r.status_code == 409 and r.json()["implied"] == "different"
    assert sorted(e["pair_id"] for e in r.json()["earlier"]) == sorted([ab, ac])
    assert post(c, bc, "different").status_code == 200


def test_leases_keep_two_annotators_apart_and_expire(make_session, photos):
    clock = Clock()
    s, c = make_session(photos, clock=clock, lease_seconds=60)
    pa = take(c, "alice")["pair"]["pair_id"]
    pb = take(c, "bob")["pair"]["pair_id"]
    assert pa != pb
    assert take(c, "alice")["pair"]["pair_id"] == pa  # a reload shows alice the same pair
    r = post(c, pa, "same", annotator="bob")
    assert r.status_code == 409 and "leased to alice" in r.json()["message"]
    clock.t += 61  # alice walked away: her lease ends, the pair goes back to the queue
    assert post(c, pb, "different", annotator="bob").status_code == 200
    assert take(c, "bob")["pair"]["pair_id"] == pa
    assert post(c, pa, "same", annotator="alice").status_code == 409  # now bob holds it
    assert post(c, pa, "same", annotator="bob").status_code == 200
    st = c.get("/api/status").json()
    assert st["answered"] == 2


def test_every_pair_leased_means_waiting(make_session, tmp_path):
    from tests.annotate.helpers import make_photos

    spec = make_photos(tmp_path / "tiny", identities=1, per_identity=3, unknown=True)
    s, c = make_session(spec, budget_pairs=3)
    got = {take(c, name)["pair"]["pair_id"] for name in ("a", "b", "c")}
    assert len(got) == 3
    out = take(c, "d")
    assert out["pair"] is None and out["state"] == "waiting"


def test_token_required_off_loopback(make_session, photos):
    from alreid.commands.annotate import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    s, c = make_session(photos, token="s3cret")
    for url in ("/", "/api/status", "/api/next", "/static/app.js"):
        assert c.get(url).status_code == 401, url
    assert c.post("/api/answer", json={"pair_id": 1, "answer": "same"}).status_code == 401
    assert c.get("/api/status", headers={"X-Alreid-Token": "wrong"}).status_code == 401
    assert c.get("/api/status", headers={"X-Alreid-Token": "s3cret"}).status_code == 200
    assert c.get("/api/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # opening the printed URL sets a cookie the page's own requests then carry
    r = c.get("/?token=s3cret")
    assert r.status_code == 200 and "alreid_token" in r.cookies
    assert c.get("/api/status").status_code == 200
    image_id = s.store.batch(1)[0].image_u
    assert c.get(f"/api/image/{image_id}").status_code == 200


def test_images_by_id_only(make_session, photos):
    from pathlib import Path

    s, c = make_session(photos)
    p = s.store.batch(1)[0]
    r = c.get(f"/api/image/{p.image_u}")
    root = Path(photos.partition(":")[2])
    expected = (root / "images" / f"ind{int(p.image_u[3:5])}" / f"{p.image_u}.png").read_bytes()
    assert r.status_code == 200 and r.content == expected
    for bad in ("..%2F..%2F..%2Fetc%2Fpasswd", "../metadata.csv", "%2Fetc%2Fpasswd", "images%2Find0%2Fimg00_00.png",
                "0", "img00_00/../../metadata.csv"):
        r = c.get(f"/api/image/{bad}")
        assert r.status_code == 404, bad
        assert b"image_id" not in r.content and b"root:" not in r.content
    assert c.get("/static/..%2F__init__.py").status_code == 404
    assert c.get("/static/app.js").status_code == 200


def test_read_only_serves_review_and_refuses_writes(make_session, photos, tmp_path):
    s, c = make_session(photos)
    pid = take(c)["pair"]["pair_id"]
    post(c, pid, "same")
    s.store.close()
    ro, rc = make_session(photos, read_only=True)
    assert take(rc)["pair"] is None and take(rc)["state"] == "read_only"
    assert post(rc, pid + 1, "same").status_code == 403
    assert rc.post("/api/undo", json={"annotator": "ann"}).status_code == 403
    assert rc.post("/api/next-cycle").status_code == 403
    answers = rc.get("/api/answers").json()
    assert [(a["pair_id"], a["answer"]) for a in answers] == [(pid, "same")]


def test_unsure_is_stored_but_no_constraint_and_the_cycle_trains_without_identities(make_session, photos):
    s, c = make_session(photos, budget_pairs=6)
    given = {}
    for k in range(6):
        pair = take(c)["pair"]
        answer = ("unsure", "same", "different")[k % 3]
        assert post(c, pair["pair_id"], answer).status_code == 200
        given[pair["pair_id"]] = answer
    assert s.state() == "batch_done"
    assert len(s.live()) == 4  # the two 'not sure' answers are not constraints
    assert c.post("/api/answer", json={"pair_id": 1, "answer": "same"}).status_code == 409
    st = s.next_cycle(wait=True)
    assert st["training"]["error"] is None and st["cycle"] == 2 and st["state"] == "annotating"
    rec = s.trial.records[-1]
    assert rec["cycle"] == 1 and rec["pairs_asked"] == 4 and "mAP" not in rec  # no identities: no metrics
    cons = s.trial.constraints.answers
    by_pair = {(p.u, p.v): given[p.pair_id] for p in s.store.batch(1)}
    assert {(u, v): ("same" if same else "different") for u, v, same in cons[["u", "v", "same"]].itertuples(index=False)} \
        == {k: a for k, a in by_pair.items() if a != "unsure"}
    # the new batch never repeats a pair answered 'not sure' as an open question
    unsure = {k for k, a in by_pair.items() if a == "unsure"}
    res = s.resolution()
    assert all(r.state == "unsure_before" for r in res if (r.pair.u, r.pair.v) in unsure)


def test_resolve_batch_and_witnesses_hand_worked():
    from alreid.annotate.session import live_constraints, resolve_batch, witnesses
    from alreid.annotate.store import Answer, Pair

    def A(i, pid, cycle, u, v, ans):
        return Answer(i, pid, cycle, u, v, ans, "x", 0.0, None)

    def P(pid, cycle, u, v):
        return Pair(pid, cycle, 0, u, v, str(u), str(v), {})

    # cycle 1: 0~1, 1~2, 2!~3, (4,5) unsure.  cycle 2 batch: (0,2) implied same, (0,3) implied different,
    # (4,5) unsure before, (5,6) open, (6,7) answered.
    answers = [A(1, 1, 1, 0, 1, "same"), A(2, 2, 1, 1, 2, "same"), A(3, 3, 1, 2, 3, "different"),
               A(4, 4, 1, 4, 5, "unsure"), A(5, 9, 2, 6, 7, "same")]
    live = live_constraints(8, answers)
    batch = [P(5, 2, 0, 2), P(6, 2, 0, 3), P(7, 2, 4, 5), P(8, 2, 5, 6), P(9, 2, 6, 7)]
    got = [(r.state, r.answer) for r in resolve_batch(batch, answers, live)]
    assert got == [("implied", "same"), ("implied", "different"), ("unsure_before", "unsure"), ("open", None),
                   ("answered", "same")]
    assert [a.answer_id for a in witnesses(answers, 0, 2)] == [1, 2]
    assert [a.answer_id for a in witnesses(answers, 3, 0)] == [3, 2, 1]  # 3 !~ 2 ~ 1 ~ 0
    assert witnesses(answers, 5, 6) == []


def test_store_refuses_other_settings(make_session, photos):
    from alreid.errors import AlreidError

    make_session(photos)[0].store.close()
    with pytest.raises(AlreidError, match="other settings.*budget_pairs"):
        make_session(photos, budget_pairs=11)


def test_answers_with_truth_give_metrics(make_session, known_photos):
    s, c = make_session(known_photos, budget_pairs=6, cycles=1)
    while (pair := take(c)["pair"]) is not None:
        u, v = (im["image_id"] for im in pair["images"])
        assert "identity" not in pair["images"][0]["meta"]  # never shown to the annotator
        post(c, pair["pair_id"], "same" if true_identity(u) == true_identity(v) else "different")
    st = s.next_cycle(wait=True)
    assert st["state"] == "finished" and st["evaluates"]
    assert np.isfinite(st["records"][-1]["mAP"])
    assert take(c)["pair"] is None and take(c)["state"] == "finished"


def test_release_gives_a_renamed_annotators_pair_back(make_session, photos):
    s, c = make_session(photos)
    pid = take(c, "anonymous")["pair"]["pair_id"]
    assert take(c, "kim")["pair"]["pair_id"] != pid  # leased to 'anonymous'
    assert c.post("/api/release", json={"annotator": "anonymous"}).status_code == 200
    assert take(c, "lee")["pair"]["pair_id"] == pid


def test_images_of_features_written_elsewhere_come_from_their_image_root(make_session, photos, tmp_path):
    """'alreid features --out ELSEWHERE' keeps paths relative to the photos and records image_root."""
    import json
    import shutil
    from pathlib import Path

    root = Path(photos.partition(":")[2])
    out = tmp_path / "zoo_lite0"
    out.mkdir()
    for name in ("metadata.csv", "features.npz"):
        shutil.copy(root / name, out / name)
    (out / "features.json").write_text(json.dumps({"image_root": str(root)}))
    s, c = make_session(f"embeddings:{out}")
    p = s.store.batch(1)[0]
    r = c.get(f"/api/image/{p.image_v}")
    assert r.status_code == 200
    assert r.content == (root / "images" / f"ind{int(p.image_v[3:5])}" / f"{p.image_v}.png").read_bytes()
    (out / "features.json").unlink()
    s2, c2 = make_session(f"embeddings:{out}", store="t.sqlite")
    assert c2.get(f"/api/image/{p.image_v}").status_code == 404  # no image_root: nothing outside the folder
