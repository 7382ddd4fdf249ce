"""Issue 13's done-when on the real LionData embeddings: a browser answers AAS's first batch, Next cycle
gives the second, and export + --oracle replay: gives the records the simulated oracle gives."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.annotate.helpers import Server, chromium, wait_for

LION = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "lion"
COMPARED = ("cycle", "pairs_asked", "pairs_ml", "pairs_cum", "n_clusters", "n_outliers", "pool_u_os", "pool_u_us",
            "mAP", "mINP", "top1", "top5", "BAKS", "AUC")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (LION / "metadata.csv").exists(), reason="../shared/data/lion is not here")]


def test_browser_answers_aas_batch_on_lion_and_replay_matches_simulation(tmp_path):
    from selenium.webdriver.common.by import By

    from alreid.annotate.export import export_answers
    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import Trial

    spec = f"embeddings:{LION.resolve()}"
    identity = pd.read_csv(LION / "metadata.csv").astype({"image_id": str}).set_index("image_id")["identity"]
    store = tmp_path / "lion.annotations.sqlite"
    server = Server(["--dataset", spec, "--method", "aas", "--cycles", "2", "--store", str(store)],
                    tmp_path / "server.log")
    driver = None
    try:
        first = server.wait_ready(300)
        assert first["cycle"] == 1 and first["batch_size"] > 0 and first["method"] == "aas"
        driver = chromium()
        driver.get(server.url)
        body = driver.find_element(By.TAG_NAME, "body")
        pair = driver.find_element(By.ID, "pair")
        wait_for(lambda: pair.get_attribute("data-pair-id"), what="the first pair")
        assert "segmentation" in driver.find_element(By.ID, "why").text  # AAS says which pool the pair is from
        # lion images are real files served by id: the browser decodes them
        wait_for(lambda: driver.execute_script("return document.getElementById('img-v').naturalWidth") > 0,
                 what="a lion photo")
        answered = 0
        while pair.get_attribute("data-pair-id"):
            current = pair.get_attribute("data-pair-id")
            u, v = pair.get_attribute("data-image-u"), pair.get_attribute("data-image-v")
            body.send_keys("s" if identity[u] == identity[v] else "d")
            wait_for(lambda: pair.get_attribute("data-pair-id") != current, what="the next pair")
            answered += 1
        st = httpx.get(server.url + "api/status").json()
        assert st["state"] == "batch_done" and st["answered"] == answered
        assert st["answered"] + st["implied"] == first["batch_size"]
        button = driver.find_element(By.ID, "btn-next-cycle")
        wait_for(button.is_displayed, what="the Next cycle button")
        button.click()
        wait_for(lambda: pair.get_attribute("data-pair-id"), timeout=300, what="the second batch")
        st = httpx.get(server.url + "api/status").json()
        assert st["cycle"] == 2 and st["state"] == "annotating" and st["answered"] == 0
        page_records = [{k: r.get(k) for k in COMPARED} for r in st["records"]]
        wait_for(lambda: driver.find_element(By.ID, "metrics").is_displayed(), what="the metrics table")
        driver.save_screenshot(str(tmp_path / "lion.png"))
    finally:
        if driver is not None:
            driver.quit()
        server.stop()

    out = tmp_path / "answers.parquet"
    export_answers(store, out)
    settings = {"dataset": spec, "method": "aas", "cycles": 1}
    replay = Trial(make_trial_config({**settings, "oracle": f"replay:{out}"}))
    replay.run()
    simulated = Trial(make_trial_config({**settings, "cycles": 2}))
    simulated.run_cycle()
    simulated.run_cycle()
    sim_records = [{k: r.get(k) for k in COMPARED} for r in simulated.records]
    assert [{k: r.get(k) for k in COMPARED} for r in replay.records] == sim_records
    assert page_records == sim_records
    # the second batch the page serves is the one the simulated trial's sampler picks next
    import sqlite3

    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT u, v FROM pairs WHERE cycle = 2 ORDER BY pos").fetchall()
    assert stored == [tuple(map(int, p)) for p in simulated.next_pairs()]
