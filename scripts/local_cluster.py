#!/usr/bin/env python3
"""A Ray cluster of several nodes plus an MLflow tracking server, all on 127.0.0.1, in one command.

    scripts/local_cluster.sh up [--dir DIR] [--workers 2] [--cpus-per-worker 1] [--gpus-per-worker 0]
    scripts/local_cluster.sh status [--dir DIR]
    scripts/local_cluster.sh stop NAME [--kill] [--dir DIR]     # one component: worker1, mlflow, ...
    scripts/local_cluster.sh start NAME [--dir DIR]             # start it again (same ports, same storage)
    scripts/local_cluster.sh down [--dir DIR]

Why a separate process per node: the cluster path (several raylets, a remote tracking server, a shared
storage folder) behaves like a real cluster only when each node is its own ``ray start`` process that can
die on its own. Every component is started with ``start_new_session`` so that its pid is also the id of
its process group: ``ray start --block`` keeps running while its node is up and its children (GCS, raylet,
the workers) stay in its group, and ``mlflow server`` keeps its web workers in its group. ``down`` and
``stop`` signal exactly those recorded groups (after checking the pid still belongs to the process we
started, by its start time); nothing is ever stopped by name and ``ray stop`` is never called.

State lives in DIR/cluster.json; logs in DIR/logs; MLflow's SQLite database and artifacts in DIR/mlflow
(served by the server, ``--serve-artifacts``); the shared storage folder for ``--storage`` is DIR/storage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("results") / "local-cluster"
STATE = "cluster.json"
#: A line ``ray start`` prints once its node has registered with the head.
RAY_READY = "Ray runtime started"
#: Custom resource naming a node, e.g. {"node_worker1": 1}: pin a trial to that node by asking for 0.001 of it.
NODE_RESOURCE = "node_{name}"
#: The head runs the driver's side only, as cluster.yaml's head node ({"CPU": 0}).
HEAD_CPUS = 0
#: How the user called us (the .sh wrapper sets it), for the commands we print.
PROG = os.environ.get("ALREID_CLUSTER_PROG", "scripts/local_cluster.sh")


class ClusterError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    """A TCP port nobody listens on right now (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str:
    """``ray``/``mlflow`` next to this Python (the project's venv), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    from shutil import which

    found = which(name)
    if not found:
        raise ClusterError(f"'{name}' is not installed next to {sys.executable} nor on PATH; run `make venv` first")
    return found


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), None when the process is gone or a
    zombie (gone for our purposes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None when no such process.

    Recorded with every pid so that a recycled pid is never signalled."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def is_ours(comp: dict[str, Any]) -> bool:
    pid = comp.get("pid")
    return bool(pid) and start_time(int(pid)) == comp.get("start_time")


def process_table() -> dict[int, tuple[int, int, int]]:
    """Every live (non-zombie) process: pid -> (parent pid, process group, start time)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(entry.name)) is not None:
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group (a zombie leader counts as gone)."""
    return any(group == pgid for _, group, _ in process_table().values())


def owned_group(comp: dict[str, Any]) -> bool:
    """Whether the process group recorded for ``comp`` is still the one we started.

    Either its leader is alive with the recorded start time, or the leader has exited and members of its
    group remain (e.g. a raylet's workers): Linux never hands out a pid that is in use as a group id, so
    such a group can only be ours. A live leader with another start time is a recycled pid: not ours."""
    pid = comp.get("pid")
    if not pid:
        return False
    st = start_time(int(pid))
    if st is None:
        return group_alive(int(pid))
    return st == comp.get("start_time")


def group_tree(pgid: int) -> dict[int, int]:
    """The processes of group ``pgid`` and all their descendants (pid -> start time).

    Ray may give each worker its own process group (``RAY_process_group_cleanup_enabled``), so signalling the
    node's group alone would leave its trials running: a lost machine takes its whole process tree with it."""
    table = process_table()
    tree = {pid: st for pid, (_, group, st) in table.items() if group == pgid}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _, st) in table.items():
            if parent in tree and pid not in tree:
                tree[pid] = st
                grew = True
    return tree


def signal_tree(tree: dict[int, int], sig: int) -> None:
    """Send ``sig`` to each process of ``tree`` that is still the one recorded (never a recycled pid)."""
    for pid, st in tree.items():
        if start_time(pid) == st:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def stop_component(comp: dict[str, Any], *, kill: bool = False, timeout: float = 30.0) -> None:
    """SIGTERM (or SIGKILL with ``kill``) the component's group and its descendants, wait, then SIGKILL whatever
    is left."""
    if not comp.get("pid"):
        return
    pid = int(comp["pid"])
    tree = group_tree(pid) if owned_group(comp) else {}
    deadline = time.monotonic() + timeout
    sent = None
    while owned_group(comp) or any(start_time(p) == st for p, st in tree.items()):
        now = time.monotonic()
        sig = signal.SIGKILL if kill or now > deadline else signal.SIGTERM  # escalate when too slow
        if sig != sent:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            signal_tree(tree, sig)
            sent = sig
        if now > deadline + 15:
            raise ClusterError(f"process group {pid} did not exit after SIGKILL")
        time.sleep(0.2)
    comp["pid"] = None
    comp["start_time"] = None


def env_for_cluster() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "disabled")  # one user, loopback only; see README for tokens on a real cluster
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.pop("RAY_ADDRESS", None)
    return env


# ---------------------------------------------------------------------------------------------- state
class Cluster:
    """The recorded layout of one local cluster (DIR/cluster.json)."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder.resolve()
        self.path = self.dir / STATE
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        return self.data.setdefault("components", {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def running(self) -> list[str]:
        return [n for n, c in self.components.items() if is_ours(c)]

    def bench_line(self) -> str:
        return (f"alreid bench configs/default.yaml --address {self.data['ray_address']} "
                f"--tracking-uri {self.data['tracking_uri']} --storage {shlex.quote(self.data['storage'])}")

    # -------------------------------------------------------------------------------- components
    def launch(self, name: str, *, timeout: float) -> None:
        """Start component ``name`` from its recorded command and wait until it is ready."""
        comp = self.components[name]
        log = Path(comp["log"])
        log.parent.mkdir(parents=True, exist_ok=True)
        offset = log.stat().st_size if log.is_file() else 0
        with open(log, "ab") as fh:
            proc = subprocess.Popen(comp["cmd"], stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**env_for_cluster(), **comp.get("env", {})}, cwd=self.dir, start_new_session=True)
        comp["pid"] = proc.pid
        comp["start_time"] = start_time(proc.pid)
        self.save()  # before waiting: a failed start can still be cleaned up by `down`
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[offset:].strip().splitlines()[-15:]
                raise ClusterError(f"{name} exited with code {proc.returncode} while starting; its log {log} ends:\n"
                                   + "\n".join(tail))
            if self._ready(comp, log, offset):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} was not ready after {timeout:.0f} s; see {log}")
            time.sleep(0.5)

    @staticmethod
    def _ready(comp: dict[str, Any], log: Path, offset: int) -> bool:
        if comp["kind"] == "ray":
            with open(log, "rb") as fh:
                fh.seek(offset)
                return RAY_READY.encode() in fh.read()
        try:
            with urllib.request.urlopen(comp["health"], timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False


def ray_node_cmd(name: str, *, head: bool, ray_port: int, cpus: float, gpus: float, object_store_mb: int) -> list[str]:
    cmd = [tool("ray"), "start", "--block", "--node-ip-address=127.0.0.1", f"--node-name={name}",
           f"--num-cpus={cpus:g}", f"--num-gpus={gpus:g}",
           f"--resources={json.dumps({NODE_RESOURCE.format(name=name): 1})}",
           f"--object-store-memory={object_store_mb * 1024 * 1024}",
           f"--dashboard-agent-listen-port={free_port()}", "--min-worker-port=0", "--max-worker-port=0",
           "--disable-usage-stats"]
    if head:
        cmd += ["--head", f"--port={ray_port}", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
    else:
        cmd += [f"--address=127.0.0.1:{ray_port}"]
    return cmd


# ---------------------------------------------------------------------------------------------- commands
def cmd_up(args: argparse.Namespace) -> int:
    cl = Cluster(args.dir)
    if cl.running():
        raise ClusterError(f"a local cluster is already running from {cl.dir} ({', '.join(cl.running())}); "
                           f"`{PROG} down --dir {args.dir}` first, or pick another --dir")
    if args.workers < 1:
        raise ClusterError(f"--workers must be >= 1; got {args.workers}")
    cl.dir.mkdir(parents=True, exist_ok=True)
    storage = cl.dir / "storage"
    mlflow_dir = cl.dir / "mlflow"
    storage.mkdir(exist_ok=True)
    (mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    ray_port, mlflow_port = args.ray_port or free_port(), args.mlflow_port or free_port()
    logs = cl.dir / "logs"
    comps: dict[str, dict[str, Any]] = {
        "head": {"kind": "ray", "cpus": args.head_cpus, "gpus": 0,
                 "cmd": ray_node_cmd("head", head=True, ray_port=ray_port, cpus=args.head_cpus, gpus=0,
                                     object_store_mb=args.object_store_mb)}}
    for i in range(1, args.workers + 1):
        name = f"worker{i}"
        comps[name] = {"kind": "ray", "cpus": args.cpus_per_worker, "gpus": args.gpus_per_worker,
                       "cmd": ray_node_cmd(name, head=False, ray_port=ray_port, cpus=args.cpus_per_worker,
                                           gpus=args.gpus_per_worker, object_store_mb=args.object_store_mb)}
    comps["mlflow"] = {"kind": "mlflow", "health": f"http://127.0.0.1:{mlflow_port}/health",
                       # no background job runner (7 extra processes); tracking and artifacts only
                       "env": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                       "cmd": [tool("mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                               "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                               "--artifacts-destination", str(mlflow_dir / "artifacts"), "--serve-artifacts",
                               "--workers", "1"]}
    for name, comp in comps.items():
        comp.update(log=str(logs / f"{name}.log"), pid=None, start_time=None)
    cl.data = {"ray_address": f"127.0.0.1:{ray_port}", "tracking_uri": f"http://127.0.0.1:{mlflow_port}",
               "storage": str(storage), "mlflow_dir": str(mlflow_dir), "components": comps}
    cl.save()
    try:
        for name in comps:
            print(f"starting {name} ...", flush=True)
            cl.launch(name, timeout=args.timeout)
    except BaseException:
        print("start failed; stopping what was started", file=sys.stderr)
        _down(cl)
        raise
    print(_status_lines(cl, nodes=False))
    print("\nrun a benchmark on it with:\n  " + cl.bench_line())
    print(f"stop it with:\n  {PROG} down --dir {shlex.quote(str(args.dir))}")
    return 0


def _down(cl: Cluster) -> list[str]:
    stopped = []
    for name in reversed(list(cl.components)):  # mlflow, workers, then the head
        comp = cl.components[name]
        if comp.get("pid"):
            was_running = is_ours(comp)
            stop_component(comp)
            if was_running:
                stopped.append(name)
        cl.save()
    return stopped


def cmd_down(args: argparse.Namespace) -> int:
    cl = Cluster(args.dir)
    if not cl.components:
        print(f"no local cluster recorded in {cl.dir}; nothing to stop")
        return 0
    stopped = _down(cl)
    print(f"stopped {', '.join(stopped) if stopped else 'nothing (no recorded process was still running)'}")
    return 0


def _component(cl: Cluster, name: str) -> dict[str, Any]:
    if name not in cl.components:
        raise ClusterError(f"no component {name!r} in {cl.path}; known: {', '.join(cl.components) or 'none'}")
    return cl.components[name]


def cmd_stop(args: argparse.Namespace) -> int:
    cl = Cluster(args.dir)
    comp = _component(cl, args.name)
    if not owned_group(comp):
        print(f"{args.name} is not running")
        return 0
    stop_component(comp, kill=args.kill)
    cl.save()
    print(f"{'killed' if args.kill else 'stopped'} {args.name}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    cl = Cluster(args.dir)
    comp = _component(cl, args.name)
    if is_ours(comp):
        print(f"{args.name} is already running (pid {comp['pid']})")
        return 0
    if args.name != "head" and not is_ours(cl.components.get("head", {})):
        raise ClusterError("the head is not running; `up` the whole cluster again instead")
    cl.launch(args.name, timeout=args.timeout)
    print(f"started {args.name} (pid {comp['pid']})")
    return 0


def _alive_nodes(address: str) -> list[str]:
    """Alive Ray nodes with their resources, asked of the head (needs ``ray`` importable)."""
    env = env_for_cluster()
    code = ("import ray, json; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(json.dumps([{'name': n['NodeName'], 'res': n['Resources']} for n in ray.nodes() if n['Alive']]))"
            % address)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if res.returncode != 0:
        return [f"(could not ask the head: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode})"]
    out = []
    for n in json.loads(res.stdout.strip().splitlines()[-1]):
        r = n["res"]
        extra = ", ".join(f"{k}={v:g}" for k, v in sorted(r.items()) if k.startswith("node_") and not k.startswith("node:"))
        out.append(f"{n['name']}: CPU={r.get('CPU', 0):g} GPU={r.get('GPU', 0):g} {extra}")
    return sorted(out)


def _status_lines(cl: Cluster, *, nodes: bool) -> str:
    lines = [f"local cluster in {cl.dir}",
             f"  ray address : {cl.data['ray_address']}",
             f"  tracking uri: {cl.data['tracking_uri']}  (SQLite and artifacts in {cl.data['mlflow_dir']})",
             f"  storage     : {cl.data['storage']}"]
    for name, comp in cl.components.items():
        state = f"running (pid {comp['pid']})" if is_ours(comp) else "stopped"
        what = f"{comp.get('cpus', 0):g} CPU, {comp.get('gpus', 0):g} GPU" if comp["kind"] == "ray" else "tracking server"
        lines.append(f"  {name:<8} {state:<22} {what}")
    if nodes and is_ours(cl.components.get("head", {})):
        lines.append("  alive Ray nodes (as the head sees them):")
        lines += [f"    {n}" for n in _alive_nodes(cl.data["ray_address"])]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    cl = Cluster(args.dir)
    if not cl.components:
        print(f"no local cluster recorded in {cl.dir}")
        return 1
    print(_status_lines(cl, nodes=not args.no_nodes))
    running = cl.running()
    if running:
        print("\n" + cl.bench_line())
    return 0 if len(running) == len(cl.components) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="local_cluster.sh", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--dir", type=Path, default=Path(os.environ.get("ALREID_CLUSTER_DIR", DEFAULT_DIR)),
                        help=f"folder of the cluster's state, logs, MLflow store and shared storage (default {DEFAULT_DIR})")
        sp.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each component to be ready")

    up = sub.add_parser("up", help="start a head, N worker nodes and an MLflow server on 127.0.0.1")
    common(up)
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--cpus-per-worker", type=float, default=1)
    up.add_argument("--gpus-per-worker", type=float, default=0)
    up.add_argument("--head-cpus", type=float, default=HEAD_CPUS,
                    help="CPUs trials may use on the head (default 0, as cluster.yaml's head)")
    up.add_argument("--object-store-mb", type=int, default=128, help="object store per node (trials pass little data)")
    up.add_argument("--ray-port", type=int, default=None)
    up.add_argument("--mlflow-port", type=int, default=None)
    up.set_defaults(func=cmd_up)
    for name, func, text in (("down", cmd_down, "stop every process `up` started, by recorded pid"),
                             ("status", cmd_status, "which components run; the alive Ray nodes")):
        sp = sub.add_parser(name, help=text)
        common(sp)
        sp.set_defaults(func=func)
    sub.choices["status"].add_argument("--no-nodes", action="store_true", help="do not ask the head for its nodes")
    st = sub.add_parser("stop", help="stop one component (a worker node, mlflow) by its recorded pid")
    common(st)
    st.add_argument("name")
    st.add_argument("--kill", action="store_true", help="SIGKILL the whole node at once (a machine lost), not SIGTERM")
    st.set_defaults(func=cmd_stop)
    sa = sub.add_parser("start", help="start a stopped component again with its recorded command")
    common(sa)
    sa.add_argument("name")
    sa.set_defaults(func=cmd_start)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except ClusterError as exc:
        print(f"local_cluster: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
