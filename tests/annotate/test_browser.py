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
