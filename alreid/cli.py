"""The ``alreid`` command line.

User mistakes (:class:`~alreid.errors.AlreidError`) become one line on stderr and exit code 2;
nothing a user can cause should end in a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alreid import __version__
from alreid.commands import COMMAND_MODULES
from alreid.errors import AlreidError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alreid", description="Active learning for animal re-identification.")
    parser.add_argument("--version", action="version", version=f"alreid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not built yet in this version
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AlreidError as exc:
        print(f"alreid: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alreid: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
