"""``alreid methods``: list registered samplers (``--all``: also trainers, backbones and datasets), one line each."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list registered samplers (and trainers, datasets) with a description")
    p.add_argument("--all", action="store_true", help="also list trainers, backbones and dataset adapters")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from alreid.registry import BACKBONES, DATASETS, SAMPLERS, TRAINERS

    groups = [("samplers (--method)", SAMPLERS)]
    if args.all:
        groups += [("trainers (--trainer)", TRAINERS), ("backbones (--backbone NAME[:VARIANT])", BACKBONES),
                   ("datasets (--dataset NAME[:ARG])", DATASETS)]
    for title, reg in groups:
        if args.all:
            print(f"{title}:")
        rows = reg.describe()
        width = max((len(n) for n, _ in rows), default=0)
        for name, doc in rows:
            print(f"  {name.ljust(width)}  {doc}" if args.all else f"{name.ljust(width)}  {doc}")
    return 0
