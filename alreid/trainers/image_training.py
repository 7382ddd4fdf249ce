"""Shared machinery of the image trainers (SpCL, ClusterContrast, skyline, baseline).

:class:`ImageTrainer` owns the backbone, the optimiser (Adam + step decay, spec 4.2), the training
iteration (augment -> embed -> loss -> step -> memory update) and the AL schedule: each
``fit_cycle`` runs ``al_every`` epochs until ``epochs`` are used up, so ``cycles x al_every =
epochs`` (the paper: 50 epochs, sampling every 10). Embeddings are cached per model version, so
the trial's "evaluate after cycle c" and "cluster before cycle c+1" share one extraction pass.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from alreid.datasets.base import ReidDataset
from alreid.datasets.images import ImageStore
from alreid.datasets.metadata import dataset_fingerprint
from alreid.models.backbones import backbone_class, build_backbone
from alreid.models.features import autocast, cache_key, extract_features, load_cached, pick_device, save_cached
from alreid.models.head import torch_threads
from alreid.models.transforms import InputSpec, TrainAugment, parse_size
from alreid.errors import ConfigError, DatasetError
from alreid.plugin import check_range
from alreid.trainers.base import CycleInput, Trainer

class RandomMultipleGallerySampler:
    """SpCL's identity-balanced sampler over pseudo-labels (spec 4.4 step 4).

    One pass visits every label once in random order: a random anchor of the label plus up to
    ``num_instances - 1`` other members, preferring other cameras when cameras are known
    (drawn with replacement only when too few exist); a singleton contributes its one image.
    Passes repeat forever; :meth:`batches` cuts the stream into fixed-size batches.
    """

    def __init__(self, labels: np.ndarray, *, num_instances: int = 4, cameras: np.ndarray | None = None,
                 rng: np.random.Generator) -> None:
        self.labels = np.asarray(labels)
        self.num_instances = int(num_instances)
        self.cameras = None if cameras is None else np.asarray(cameras)
        self.rng = rng
        order = np.argsort(self.labels, kind="stable")
        uniq, start = np.unique(self.labels[order], return_index=True)
        self.members = np.split(order, start[1:]) if len(order) else []
        self.uniq = uniq

    def one_pass(self) -> list[int]:
        out: list[int] = []
        k = self.num_instances - 1
        for c in self.rng.permutation(len(self.members)):
            members = self.members[c]
            anchor = int(self.rng.choice(members))
            out.append(anchor)
            if len(members) == 1 or k <= 0:
                continue
            others = members[members != anchor]
            if self.cameras is not None:
                diff = others[self.cameras[others] != self.cameras[anchor]]
                if len(diff):
                    others = diff
            pick = self.rng.choice(others, size=k, replace=len(others) < k)
            out.extend(int(i) for i in pick)
        return out

    def stream(self) -> Iterator[int]:
        while True:
            yield from self.one_pass()

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        it = self.stream()
        while True:
            yield np.fromiter((next(it) for _ in range(batch_size)), dtype=np.int64, count=batch_size)


#: ``iters`` value for one pass over the pool per epoch (capped at ``spec_iters``): CPU smoke runs
ONE_PASS = "one_pass"


def factorize(labels: np.ndarray) -> np.ndarray:
    """Labels of any type -> 0..k-1 codes."""
    return np.unique(np.asarray(labels).astype(str) if np.asarray(labels).dtype == object else labels,
                     return_inverse=True)[1].astype(np.int64)


def check_clustering_params(trainer: Any) -> None:
    """The per-epoch DBSCAN-on-Jaccard parameters (eps, min_samples, k1, k2) that clustering trainers share."""
    owner = f"trainer {trainer.name!r}"
    check_range(owner, "eps", trainer.eps, 0, 1, lo_open=True)
    check_range(owner, "min_samples", trainer.min_samples, 1, integer=True)
    check_range(owner, "k1", trainer.k1, 2, integer=True)
    check_range(owner, "k2", trainer.k2, 1, integer=True)


class ImageTrainer(Trainer):
    """Base of the trainers that read images. A new image trainer (ICE, PPLR, ...) is a subclass that

    * declares its parameters once: ``param_defaults = {**ImageTrainer.param_defaults, "eps": 0.6}``
      (override a shared default by naming it again; write no ``__init__``: :class:`Configurable`
      generates the keyword-only constructor, ``get_params`` and ``from_params`` from the dict);
    * checks its own parameters in :meth:`validate_params` (call ``super().validate_params()`` first);
    * creates per-trial state in :meth:`setup_extra` (the backbone, optimiser, schedule and image
      store already exist as ``model_``, ``optimizer_``, ``scheduler_``, ``store_``);
    * trains in :meth:`_fit` (``n_epochs`` epochs of this cycle: build labels/memory, then call
      :meth:`train_epoch` with a batch stream, a loss and a memory update, and :meth:`end_epoch`;
      return :meth:`summarise`), and sets ``spec_iters`` to its reference iterations per epoch;
    * optionally overrides :meth:`sampling_features` (what AL samplers cluster) and
      :meth:`extra_state` / :meth:`load_extra_state` (checkpointed state beyond the model).

    Shared parameters (``param_defaults``): ``backbone``, ``weights``, ``pooling`` (avg | gem),
    ``image_size`` (HxW), ``epochs`` (in all), ``al_every`` (epochs per cycle), ``iters`` (per epoch;
    None = the reference implementation's ``spec_iters``, ``"one_pass"`` = one pass over the pool
    capped at it, for CPU smoke runs), ``batch_size``, ``num_instances`` (per identity in a
    batch), ``lr``, ``weight_decay``, ``lr_step``/``lr_gamma`` (step decay), ``temperature`` and
    ``momentum`` (memory), ``frozen_stages``, ``device``, ``amp``, ``eval_batch_size``,
    ``cache_features`` (disk cache of the version-0 embedding), ``cache_bytes`` (decoded-image
    cache), ``threads``, ``progress``.
    """

    needs_images = True
    #: the reference implementation's iterations per epoch (the default); ``iters="one_pass"`` caps one pass at it
    spec_iters = 400
    param_defaults: ClassVar[dict[str, Any]] = {
        "backbone": "efficientnet_lite0", "weights": "imagenet", "pooling": "avg", "image_size": "256x128",
        "epochs": 50, "al_every": 10, "iters": None, "batch_size": 64, "num_instances": 4, "lr": 3.5e-4,
        "weight_decay": 5e-4, "lr_step": 20, "lr_gamma": 0.1, "temperature": 0.05, "momentum": 0.2,
        "frozen_stages": "auto", "device": "auto", "amp": True, "eval_batch_size": 64, "cache_features": True,
        "cache_bytes": 2 << 30, "threads": None, "progress": True,
    }

    # parameters ---------------------------------------------------------------------------------
    def validate_params(self) -> None:
        owner = f"trainer {self.name!r}"
        backbone_class(self.backbone)  # an unknown name (NAME or NAME:VARIANT) raises with the choices
        if self.image_size != "auto":  # auto: the backbone's own input size (MegaDescriptor, MiewID)
            parse_size(self.image_size)
        check_range(owner, "epochs", self.epochs, 0, integer=True)
        check_range(owner, "al_every", self.al_every, 1, integer=True)
        if isinstance(self.iters, str) and self.iters != ONE_PASS:

            raise ConfigError(f"{owner} parameter iters must be a positive integer, {ONE_PASS!r} (one pass over the "
                              f"pool, for CPU smoke runs) or null (the official {self.spec_iters}); got {self.iters!r}")
        if self.iters is not None and self.iters != ONE_PASS:
            check_range(owner, "iters", self.iters, 1, integer=True)
        check_range(owner, "batch_size", self.batch_size, 2, integer=True)
        check_range(owner, "num_instances", self.num_instances, 1, integer=True)
        check_range(owner, "lr", self.lr, 0, lo_open=True)
        check_range(owner, "weight_decay", self.weight_decay, 0)
        check_range(owner, "lr_step", self.lr_step, 1, integer=True)
        check_range(owner, "lr_gamma", self.lr_gamma, 0, 1)
        check_range(owner, "temperature", self.temperature, 0, lo_open=True)
        check_range(owner, "momentum", self.momentum, 0, 1, hi_open=True)
        if self.frozen_stages != "auto":
            check_range(owner, "frozen_stages", self.frozen_stages, 0, integer=True)
        check_range(owner, "eval_batch_size", self.eval_batch_size, 1, integer=True)
        check_range(owner, "cache_bytes", self.cache_bytes, 0, integer=True)
        if self.threads is not None:
            check_range(owner, "threads", self.threads, 1, integer=True)
        if self.pooling not in ("avg", "gem", "auto"):
            raise ConfigError(f"{owner} parameter pooling must be 'avg', 'gem' or 'auto' (the backbone's own); "
                              f"got {self.pooling!r}")
        if str(self.device) not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise ConfigError(f"{owner} parameter device must be auto, cpu or cuda[:N]; got {self.device!r}")

    # setup and embedding ------------------------------------------------------------------------
    def setup(self, dataset: ReidDataset, *, seed: int) -> None:
        if dataset.root is None or "path" not in dataset.metadata.columns:
            raise DatasetError(
                f"trainer {self.name!r} reads images, but dataset {dataset.name!r} has no image root/path column; "
                "use an image dataset (metadata:ROOT, folders:ROOT, market1501:ROOT, wildlife:Class:ROOT) or "
                "--trainer head for precomputed features")
        self.dataset_ = dataset
        self.store_ = ImageStore(dataset.root, dataset.metadata["path"].astype(str).tolist(),
                                 cache_bytes=self.cache_bytes)
        self.device_ = pick_device(self.device)
        self.seed_ = int(seed)
        model = build_backbone(self.backbone, weights=self.weights, pooling=self.pooling, seed=seed)
        self.frozen_ = self.resolve_frozen(model)
        if self.frozen_:
            model.freeze_stages(self.frozen_)
        self.model_ = model.to(self.device_).to(memory_format=torch.channels_last)
        size = tuple(model.default_size) if self.image_size == "auto" else parse_size(self.image_size)
        self.spec_ = InputSpec(size, model.input_mean, model.input_std)
        self.augment_ = TrainAugment(self.spec_)
        params = [p for p in self.model_.parameters() if p.requires_grad]
        self.optimizer_ = _adam(params, lr=self.lr, weight_decay=self.weight_decay, device=self.device_)
        self.scheduler_ = torch.optim.lr_scheduler.StepLR(self.optimizer_, step_size=int(self.lr_step),
                                                          gamma=float(self.lr_gamma))
        self.scaler_ = torch.amp.GradScaler("cuda") if (self.amp and self.device_.type == "cuda") else None
        self.epochs_done_ = 0
        self.version_ = 0
        self._embedding: tuple[int, np.ndarray] | None = None
        self.setup_extra()

    def setup_extra(self) -> None:
        """Hook for subclass state created at setup."""

    def resolve_frozen(self, model: Any) -> int:
        """``frozen_stages="auto"``: SpCL trains every layer, which a GPU affords; a CPU cannot (a few
        images/s for EfficientNet-Lite0), so there the high-resolution early stages stay at their
        pretrained values (ASSUMPTION, CPU only; random-init backbones are never frozen)."""
        if self.frozen_stages != "auto":
            return int(self.frozen_stages)
        if self.device_.type != "cpu" or model.weights_id == "random":
            return 0
        return int(model.cpu_frozen_stages)

    def _threads(self):
        return torch_threads(self.threads)

    def embed(self) -> np.ndarray:
        """Eval-mode L2-normalised embeddings of every row; cached per model version (and on disk at version 0)."""
        if self._embedding is not None and self._embedding[0] == self.version_:
            return self._embedding[1].copy()
        with self._threads():
            feats = self._extract_all()
        self._embedding = (self.version_, feats)
        return feats.copy()

    def _extract_all(self) -> np.ndarray:
        key = None
        if self.version_ == 0 and self.cache_features and self.model_.weights_id != "random":
            desc = dict(self.model_.describe(), neck="bn-identity")
            key = cache_key(dataset_fingerprint(self.dataset_), desc, self.spec_)
            hit = load_cached(key, self.dataset_.n)
            if hit is not None:
                return hit
        feats = extract_features(self.model_, self.store_, np.arange(self.dataset_.n), self.spec_,
                                 device=self.device_, batch_size=int(self.eval_batch_size), amp=self.amp,
                                 progress=self.progress, desc=f"{self.name}: embedding",
                                 source=f"dataset {self.dataset_.name!r}")
        if key is not None:
            save_cached(key, feats)
        return feats

    def pool_features(self, train_idx: np.ndarray) -> np.ndarray:
        """Current eval-mode embeddings of the training pool."""
        return self.embed()[np.asarray(train_idx)]

    def sampling_features(self, train_idx: np.ndarray) -> np.ndarray:
        """The features an AL sampler should cluster (spec 1.11 ``aas_features``); fresh embeddings here."""
        return self.pool_features(train_idx)

    def fit_cycle(self, inp: CycleInput) -> dict[str, Any]:
        """This cycle's ``al_every`` epochs (none once ``epochs`` are used up), with the thread setting applied."""
        with self._threads():
            n_epochs = self.cycle_epochs()
            if n_epochs == 0:
                return self.summarise([], {"epochs_total": self.epochs_done_})
            return self._fit(inp, n_epochs)

    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        """Train ``n_epochs`` epochs; implemented by each image trainer."""
        raise NotImplementedError

    def _decode_workers(self) -> int:
        """Threads decoding cache misses: a GPU step is fast enough for decoding to be the bottleneck,
        while on a CPU the cores are busy with the network (and the first pass fills the cache)."""
        return min(8, os.cpu_count() or 1) if self.device_.type == "cuda" else 1

    # schedule -----------------------------------------------------------------------------------
    def planned_cycles(self) -> int:
        """cycles x al_every = epochs (the paper: 50 epochs, sampling every 10 -> 5 cycles)."""
        return math.ceil(int(self.epochs) / int(self.al_every))

    def cycle_epochs(self) -> int:
        """Epochs this cycle: ``al_every`` until ``epochs`` are used up (then 0, with a warning)."""
        left = int(self.epochs) - self.epochs_done_
        if left <= 0:
            warnings.warn(f"trainer {self.name!r}: all {self.epochs} epochs are used up; this cycle trains nothing "
                          f"(run cycles = epochs / al_every = {math.ceil(self.epochs / self.al_every)})",
                          stacklevel=3)
            return 0
        return min(int(self.al_every), left)

    def iters_for(self, n_items: int, batch_size: int | None = None) -> int:
        """Iterations per epoch: the reference value (``iters=None``, issue 10 item 5), ``iters``, or with
        ``iters="one_pass"`` one pass over ``n_items`` capped at the reference value (CPU smoke runs)."""
        if self.iters is None:
            return int(self.spec_iters)
        if self.iters == ONE_PASS:
            bs = int(batch_size or self.batch_size)
            return max(1, min(self.spec_iters, math.ceil(n_items / bs)))
        return int(self.iters)

    # one training epoch -------------------------------------------------------------------------
    def load_batch(self, rows: np.ndarray) -> torch.Tensor:
        """Normalised, un-augmented (b, 3, h, w) batch of dataset ``rows`` on the training device."""
        x = self.spec_.normalise(self.store_.batch(rows, self.spec_.size, self.spec_.resize,
                                                   workers=self._decode_workers()), self.device_)
        return x.contiguous(memory_format=torch.channels_last)

    def run_steps(self, train_idx: np.ndarray, batches: Iterator[np.ndarray], n_iters: int,
                  step: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
                  after_step: Callable[[], None] | None, desc: str,
                  optimizer: torch.optim.Optimizer | None = None,
                  modules: tuple[torch.nn.Module, ...] = ()) -> dict[str, float]:
        """``n_iters`` optimiser steps, the one training loop of every image trainer.

        ``batches`` yields pool positions; ``step(x, pos)`` gets their un-augmented batch and returns the
        loss; ``after_step()`` runs after each optimiser step (memory updates). ``modules`` are put in
        train mode with the model (extra heads)."""
        opt = optimizer or self.optimizer_
        self.model_.train()
        for m in modules:
            m.train()
        losses: list[float] = []
        n_images = 0
        t0 = time.perf_counter()
        bar = None
        if self.progress:
            bar = tqdm(total=n_iters, desc=desc, unit="it", leave=False, mininterval=1.0)
        for _ in range(n_iters):
            pos = next(batches)
            x = self.load_batch(np.asarray(train_idx)[pos])
            loss = step(x, pos)
            opt.zero_grad(set_to_none=True)
            if self.scaler_ is not None:
                self.scaler_.scale(loss).backward()
                self.scaler_.step(opt)
                self.scaler_.update()
            else:
                loss.backward()
                opt.step()
            if after_step is not None:
                after_step()
            losses.append(float(loss.detach()))
            n_images += len(pos)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if bar is not None:
            bar.close()
        if self.device_.type == "cuda":
            torch.cuda.synchronize()
        self.version_ += 1
        return {"loss": float(np.mean(losses)) if losses else float("nan"), "images": n_images,
                "seconds": time.perf_counter() - t0}

    def train_epoch(self, train_idx: np.ndarray, batches: Iterator[np.ndarray], n_iters: int,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    after_step: Callable[[torch.Tensor, torch.Tensor], None] | None,
                    gen: torch.Generator, desc: str) -> dict[str, float]:
        """``n_iters`` steps on augmented batches; ``loss_fn(f, pos)`` gets normalised embeddings and
        ``after_step(f, pos)`` the same detached (SpCL-style memories)."""
        model, dev = self.model_, self.device_
        last: dict[str, torch.Tensor] = {}

        def step(x: torch.Tensor, pos: np.ndarray) -> torch.Tensor:
            x = self.augment_(x.contiguous(), gen).contiguous(memory_format=torch.channels_last)
            pos_t = torch.as_tensor(pos, device=dev)
            with autocast(dev, self.amp):
                f = model(x)
            f = F.normalize(f.float(), dim=1)
            last["f"], last["pos"] = f, pos_t
            return loss_fn(f, pos_t)

        after = None if after_step is None else (lambda: after_step(last["f"].detach(), last["pos"]))
        return self.run_steps(train_idx, batches, n_iters, step, after, desc)

    def end_epoch(self) -> None:
        self.scheduler_.step()
        self.epochs_done_ += 1

    def summarise(self, epochs: list[dict[str, float]], extra: dict[str, Any]) -> dict[str, Any]:
        """Per-cycle stats: mean last-epoch loss, throughput over the cycle's training steps."""
        imgs = sum(e["images"] for e in epochs)
        secs = sum(e["seconds"] for e in epochs)
        out = {"epochs_run": len(epochs), "frozen_stages": getattr(self, "frozen_", 0),
               "train_loss": epochs[-1]["loss"] if epochs else float("nan"), "train_images": int(imgs),
               "train_images_per_s": imgs / secs if secs > 0 else 0.0}
        out.update(extra)
        return out

    # checkpointing ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model_.state_dict(), "optimizer": self.optimizer_.state_dict(),
                 "scheduler": self.scheduler_.state_dict(), "epochs_done": self.epochs_done_,
                 "version": self.version_, "params": self.get_params()}
        if self.scaler_ is not None:
            state["scaler"] = self.scaler_.state_dict()
        state.update(self.extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model_.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.scheduler_.load_state_dict(state["scheduler"])
        if self.scaler_ is not None and "scaler" in state:
            self.scaler_.load_state_dict(state["scaler"])
        self.epochs_done_ = int(state["epochs_done"])
        self.version_ = int(state["version"])
        self._embedding = None
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""


def _adam(params: list[torch.nn.Parameter], *, lr: float, weight_decay: float, device: torch.device
          ) -> torch.optim.Optimizer:
    """Adam (L2 weight decay, as SpCL); the fused kernel where this torch build supports it."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
    except (RuntimeError, TypeError):  # pragma: no cover - old torch
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
