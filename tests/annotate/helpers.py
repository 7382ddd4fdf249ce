"""A small embeddings dataset with real image files, for the annotate tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_photos(folder: Path, *, identities: int = 4, per_identity: int = 6, unknown: bool = True,
                dim: int = 16, seed: int = 0) -> str:
    """Write metadata.csv (image_id, identity, path, date, encounter), features.npz and PNG files.

    Images of one individual share a colour, so a person (or a test) can tell them apart; features are
    Gaussian clusters around one centre per individual. Returns the dataset spec ``embeddings:FOLDER``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    centres = rng.normal(size=(identities, dim)) * 3
    rows, feats = [], []
    for k in range(identities):
        colour = tuple(int(c) for c in rng.integers(40, 230, size=3))
        for j in range(per_identity):
            image_id = f"img{k:02d}_{j:02d}"
            path = f"images/ind{k}/{image_id}.png"
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            arr = np.full((48, 64, 3), colour, dtype=np.uint8)
            arr[8 + 4 * j: 14 + 4 * j, 10:54] = 255 - np.array(colour, dtype=np.uint8)
            Image.fromarray(arr).save(folder / path)
            rows.append({"image_id": image_id, "identity": "unknown" if unknown else f"ind{k}", "path": path,
                         "date": f"2024-05-{1 + j:02d}", "encounter": f"e{j % 3}"})
            feats.append(centres[k] + rng.normal(size=dim))
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    np.savez(folder / "features.npz", features=np.asarray(feats, dtype=np.float32))
    return f"embeddings:{folder}"


def true_identity(image_id: str) -> str:
    """The individual an image of :func:`make_photos` shows (from its id, as the colours do for a person)."""
    return f"ind{int(image_id[3:5])}"


class Server:
    """``alreid annotate`` in a real subprocess, on a free loopback port."""

    def __init__(self, args: list[str], log: Path) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**__import__("os").environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
        self._out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "alreid.cli", "annotate", *args, "--port", str(self.port)],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 180.0) -> dict:
        import time

        import httpx

        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + "api/status", timeout=5)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not ready after {timeout}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


def chromium(download_dir: Path | None = None, size: tuple[int, int] = (1280, 860)):
    """Headless Chromium from Debian's packages through its chromedriver (no browser download)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(driver_path).exists() or not Path(browser).exists():
        raise AssertionError("the browser tests need Debian's chromium and chromium-driver: "
                             "apt-get install -y chromium chromium-driver (make test installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={size[0]},{size[1]}", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll until predicate() is truthy; return its value."""
    import time

    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
