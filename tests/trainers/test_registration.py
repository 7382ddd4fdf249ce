"""The new trainers and backbones are registered (entry points and the static table agree, tests/test_registry.py)
and ``alreid methods --all`` lists each on one line with its description."""

from __future__ import annotations

from alreid.cli import main as cli_main
from alreid.registry import BACKBONES, TRAINERS

NEW_TRAINERS = ("ice", "pplr", "rtmem", "purification")
NEW_BACKBONES = ("megadescriptor", "miewid")


def test_methods_all_lists_the_new_trainers_and_backbones_one_line_each(capsys):
    assert cli_main(["methods", "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    sections = {}
    current = None
    for ln in lines:
        if not ln.startswith(" "):
            current = ln.split(" ")[0]
            continue
        name, _, doc = ln.strip().partition("  ")
        sections.setdefault(current, {})[name] = doc.strip()
    for name in NEW_TRAINERS:
        assert name in TRAINERS.names() and sections["trainers"][name] == TRAINERS.get(name).description
    for name in NEW_BACKBONES:
        assert name in BACKBONES.names() and sections["backbones"][name] == BACKBONES.get(name).description
    assert "variants" in sections["backbones"]["megadescriptor"] and "L-384" in sections["backbones"]["megadescriptor"]
