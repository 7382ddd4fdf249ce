"""`alreid --help` and `alreid annotate --help` stay light: FastAPI is imported only when the server starts."""

from __future__ import annotations

import subprocess
import sys


def test_help_does_not_import_the_web_stack():
    code = ("import sys, contextlib, io\n"
            "from alreid.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['annotate', '--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_store_is_one_line_exit_2(capsys):
    from alreid.cli import main

    assert main(["annotate", "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["alreid: error: alreid annotate needs --store FILE (the SQLite file that keeps the answers)"]
