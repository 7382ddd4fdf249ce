"""Importing the package and building the CLI parser must not pull in the heavy dependencies."""

import subprocess
import sys


def test_light_import():
    code = ("import sys, alreid, alreid.cli, alreid.registry; alreid.cli.build_parser(); "
            "heavy = [m for m in ('torch', 'ray', 'mlflow', 'faiss', 'sklearn', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
