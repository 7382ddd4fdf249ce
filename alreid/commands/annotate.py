"""``alreid annotate``: a web page where a person answers the pairs a sampler picks; ``... export`` writes them out."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
from pathlib import Path

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (no token needed there)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None) -> str | None:
    """The token requests must carry: the one given, a fresh one off loopback, else none."""
    if token is not None:
        if not token.strip():
            from alreid.errors import ConfigError

            raise ConfigError("--token must not be empty")
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(18)


def register(sub: argparse._SubParsersAction) -> None:
    from alreid.commands.run import add_trial_arguments

    p = sub.add_parser("annotate", help="answer the pairs a sampler picks in a web page (human in the loop)",
                       description="Serve a web page where a person answers 'same animal?' for the pairs the sampler "
                                   "picks; answers are stored in an SQLite file, so the session can be resumed with "
                                   "the same command. 'alreid annotate export' writes the answers for --oracle replay:.")
    add_trial_arguments(p)
    p.add_argument("--store", type=Path, default=None, metavar="FILE",
                   help="SQLite file holding the session (created if missing; reopen it to continue)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=None, help="access token (generated and printed when --host is not loopback)")
    p.add_argument("--read-only", action="store_true", help="review the stored answers; take none")
    p.add_argument("--lease-minutes", type=float, default=5.0,
                   help="minutes a served pair stays reserved for its annotator (default 5)")
    p.set_defaults(func=main)
    actions = p.add_subparsers(dest="annotate_action", metavar="ACTION")
    e = actions.add_parser("export", help="write the stored answers as Parquet or CSV (constraint store format)")
    e.add_argument("--store", type=Path, required=True, metavar="FILE")
    e.add_argument("--out", type=Path, required=True, metavar="FILE", help="answers.parquet or answers.csv")
    e.add_argument("--constraints-only", action="store_true",
                   help="only u, v, same, cycle and no 'not sure' rows (loads with ConstraintStore.from_parquet)")
    e.set_defaults(func=export_main)


def export_main(args: argparse.Namespace) -> int:
    from alreid.annotate.export import export_answers

    df = export_answers(args.store, args.out, constraints_only=args.constraints_only)
    print(f"{len(df)} answers written to {args.out}")
    return 0


def main(args: argparse.Namespace) -> int:
    from alreid.errors import ConfigError

    if args.store is None:
        raise ConfigError("alreid annotate needs --store FILE (the SQLite file that keeps the answers)")
    if args.lease_minutes <= 0:
        raise ConfigError(f"--lease-minutes must be positive; got {args.lease_minutes}")
    if args.read_only and not args.store.is_file():
        raise ConfigError(f"--read-only reviews an existing store, and {args.store} does not exist")
    token = access_token(args.host, args.token)
    try:
        import uvicorn

        from alreid.annotate.app import create_app
    except ModuleNotFoundError as exc:
        raise ConfigError(f"alreid annotate needs {exc.name}: pip install fastapi uvicorn") from None
    from alreid.annotate.session import Session
    from alreid.annotate.store import AnnotationStore
    from alreid.commands.run import trial_config_from_args

    cfg = trial_config_from_args(args)
    store = AnnotationStore(args.store)
    session = Session(store, cfg, lease_seconds=60.0 * args.lease_minutes, read_only=args.read_only).start()
    app = create_app(session, token=token)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    s = session.status()
    print(f"alreid annotate: {s['dataset']}, {cfg.method} + {cfg.trainer}; cycle {s['cycle']} of {s['cycles']}, "
          f"{s['remaining']} of {s['batch_size']} pairs open; store {args.store}", flush=True)
    print(f"open {url}{'  (read-only)' if args.read_only else ''}   (Ctrl-C stops; answers are already saved)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    store.close()
    return 0
