"""A real browser (headless Chromium) drives the page: keyboard answers, undo, reload, screenshot."""

from __future__ import annotations

import httpx

from tests.annotate.helpers import Server, chromium, wait_for


def test_keyboard_answers_undo_and_reload_in_chromium(photos, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    store = tmp_path / "zoo.annotations.sqlite"
    server = Server(["--dataset", photos, "--method", "random", "--budget-pairs", "8", "--cycles", "2",
                     "--store", str(store)], tmp_path / "server.log")
    driver = None
    try:
        server.wait_ready()
        driver = chromium()
        driver.get(server.url)
        name = driver.find_element(By.ID, "annotator")
        name.clear()
        name.send_keys("robin", Keys.ENTER)
        body = driver.find_element(By.TAG_NAME, "body")
        pair_id = lambda: driver.find_element(By.ID, "pair").get_attribute("data-pair-id")  # noqa: E731
        wait_for(pair_id, what="the first pair")
        # the images really load (natural size of the PNGs: 64 x 48)
        wait_for(lambda: driver.execute_script("return document.getElementById('img-u').naturalWidth") == 64,
                 what="the left image")
        seen = []
        for key in ("s", "d", "s"):
            current = pair_id()
            seen.append(int(current))
            body.send_keys(key)
            wait_for(lambda: pair_id() not in ("", current), what=f"the pair after pressing {key}")
        st = httpx.get(server.url + "api/status").json()
        assert st["answered"] == 3 and st["remaining"] == 5
        body.send_keys("z")  # undo the third answer: its pair comes back
        wait_for(lambda: pair_id() == str(seen[2]), what="the undone pair")
        assert httpx.get(server.url + "api/status").json()["answered"] == 2
        driver.refresh()
        wait_for(lambda: pair_id() == str(seen[2]), what="the same pair after a reload")
        assert driver.find_element(By.ID, "annotator").get_attribute("value") == "robin"
        text = wait_for(lambda: driver.find_element(By.ID, "progress-text").text, what="the progress text")
        assert "2 / 8 done" in text and "2 answered" in text
        with httpx.Client() as c:
            answers = c.get(server.url + "api/answers").json()
        assert [(a["pair_id"], a["answer"], a["annotator"]) for a in answers] == [
            (seen[0], "same", "robin"), (seen[1], "different", "robin")]
        shot = tmp_path / "annotate.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


def test_contradiction_dialog_in_chromium(tmp_path):
    """Another annotator's answers make the shown pair implied; answering the opposite opens the dialog."""
    from selenium.webdriver.common.by import By

    from tests.annotate.helpers import make_photos

    spec = make_photos(tmp_path / "five", identities=1, per_identity=5, unknown=True)
    store = tmp_path / "five.sqlite"
    server = Server(["--dataset", spec, "--method", "random", "--budget-pairs", "10", "--cycles", "1",
                     "--store", str(store)], tmp_path / "server.log")
    driver = None
    try:
        server.wait_ready()
        import sqlite3

        with sqlite3.connect(store) as db:
            pairs = {(u, v): pid for pid, u, v in db.execute("SELECT pair_id, u, v FROM pairs")}
        assert len(pairs) == 10  # all pairs of 5 photos
        driver = chromium()
        driver.get(server.url)
        pair = driver.find_element(By.ID, "pair")
        shown = int(wait_for(lambda: pair.get_attribute("data-pair-id"), what="a pair"))
        p, q = next(k for k, v in pairs.items() if v == shown)
        r = next(x for x in range(5) if x not in (p, q))
        for a, b in ((p, r), (r, q)):  # someone else: p ~ r ~ q, so p ~ q is implied
            pid = pairs[(min(a, b), max(a, b))]
            res = httpx.post(server.url + "api/answer", json={"pair_id": pid, "answer": "same", "annotator": "sam"})
            assert res.status_code == 200, res.text
        driver.find_element(By.TAG_NAME, "body").send_keys("d")
        dialog = driver.find_element(By.ID, "conflict")
        wait_for(dialog.is_displayed, what="the contradiction dialog")
        thumbs = dialog.find_elements(By.CSS_SELECTOR, "#conflict-pairs img.thumb")
        assert len(thumbs) == 4  # two earlier pairs, two photos each
        wait_for(lambda: all(driver.execute_script("return arguments[0].naturalWidth", t) == 64 for t in thumbs),
                 what="the thumbnails")
        assert '"same"' in driver.find_element(By.ID, "conflict-text").text
        assert httpx.get(server.url + "api/status").json()["answered"] == 2  # nothing stored yet
        driver.save_screenshot(str(tmp_path / "conflict.png"))
        driver.find_element(By.ID, "btn-keep-mine").click()
        wait_for(lambda: not dialog.is_displayed(), what="the dialog to close")
        wait_for(lambda: len(httpx.get(server.url + "api/answers").json()) == 1, what="the withdrawal")
        answers = httpx.get(server.url + "api/answers").json()
        assert [(a["pair_id"], a["answer"]) for a in answers] == [(shown, "different")]
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
