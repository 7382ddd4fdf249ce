"""Images/s of every backbone: inference (BN folded, as ``embed``) and training steps (as ``fit_cycle``).

Run: ``.venv/bin/python benchmarks/bench_training.py [--sizes 128 224] [--batch 32] [--steps 3]``.
Training is timed with the trainers' own pieces (augmentation, forward, hybrid-memory loss, Adam,
memory update) on synthetic images, once with every layer trainable (SpCL's setting) and once with
``frozen_stages="auto"``'s CPU default. CUDA is benchmarked too when available (mixed precision).
The load average is printed: on a shared machine the figures scale with the CPU share you get.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from alreid.models.hybrid_memory import HybridMemory
from alreid.models.backbones import build_backbone, fold_batchnorm
from alreid.models.features import autocast
from alreid.models.transforms import InputSpec, TrainAugment


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_inference(model, spec: InputSpec, device: torch.device, batch: int, steps: int) -> float:
    net = fold_batchnorm(model).to(device).to(memory_format=torch.channels_last)
    x = spec.normalise(np.zeros((batch, *spec.size, 3), np.uint8) + 128, device, channels_last=True)
    with torch.no_grad():
        with autocast(device, True):
            net(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            with autocast(device, True):
                net(x)
        _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def bench_training(model, spec: InputSpec, device: torch.device, batch: int, steps: int, frozen: int) -> float:
    if frozen:
        model.freeze_stages(frozen)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3.5e-4, weight_decay=5e-4,
                           foreach=True)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    n_mem = 4 * batch
    memory = HybridMemory(torch.randn(n_mem, model.feature_dim, device=device), np.arange(n_mem) // 4)
    aug = TrainAugment(spec)
    gen = torch.Generator().manual_seed(0)
    imgs = np.random.default_rng(0).integers(0, 256, size=(batch, *spec.size, 3), dtype=np.uint8)
    model.train()

    def step() -> None:
        idx = torch.randint(0, n_mem, (batch,), generator=gen).to(device)
        x = aug(spec.normalise(imgs, device), gen).contiguous(memory_format=torch.channels_last)
        with autocast(device, True):
            f = model(x)
        f = F.normalize(f.float(), dim=1)
        loss = memory.loss(f, idx)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        memory.update(f.detach(), idx)

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "resnet50", "tiny"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[128, 224], help="square input sizes")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-full", action="store_true", help="skip fully trainable models on CPU (slow)")
    args = ap.parse_args(argv)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; batch {args.batch}, {args.steps} timed steps")
    print(f"{'device':6} {'backbone':18} {'size':>5} {'infer img/s':>12} {'train img/s (all)':>18} "
          f"{'train img/s (frozen)':>21}")
    for device in devices:
        for name in args.backbones:
            for size in args.sizes:
                torch.manual_seed(0)
                model = build_backbone(name, weights="none")
                spec = InputSpec((size, size), model.input_mean, model.input_std)
                infer = bench_inference(model, spec, device, args.batch, args.steps)
                full = float("nan")
                if device.type == "cuda" or not args.no_full:
                    full = bench_training(build_backbone(name, weights="none"), spec, device, args.batch,
                                          args.steps, frozen=0)
                k = build_backbone(name, weights="none").cpu_frozen_stages
                frozen = (bench_training(build_backbone(name, weights="none"), spec, device, args.batch, args.steps,
                                         frozen=k) if k else float("nan"))
                print(f"{device.type:6} {name:18} {size:5d} {infer:12.1f} {full:18.1f} {frozen:15.1f} (k={k})",
                      flush=True)


if __name__ == "__main__":
    main()
