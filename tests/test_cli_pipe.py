"""Output piped into a reader that closes early (`alreid ... | head`) ends quietly, with no traceback."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_closed_pipe_ends_without_a_traceback(tmp_path):
    config = tmp_path / "many.yaml"  # a plan of ~1 MB of text: far more than a pipe and `head` take in
    config.write_text("name: many\ndatasets: [synthetic]\nmethods: [none, random, aas, gbas, lbas, nis]\nseeds: 3000\n")
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    proc = subprocess.run([sys.executable, "-m", "alreid.cli", "bench", str(config), "--dry-run"],
                          stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=300, cwd=tmp_path)
    reader.stdin.close()
    reader.wait(timeout=30)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
