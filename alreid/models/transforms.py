"""Input pipeline: resized uint8 images -> normalised tensors, and SpCL's training augmentation on batches.

Resizing happens once per image (cached by :class:`~alreid.datasets.images.ImageStore`); everything
after it (flip, pad + random crop, random erasing, normalisation) runs on whole batches on the
training device, drawn from a seeded CPU generator so a run is reproducible on any device.
SpCL's train pipeline (spec 4.2): Resize -> RandomHorizontalFlip(0.5) -> Pad(10) -> RandomCrop ->
Normalize -> RandomErasing(p=0.5, area 0.02-0.4, aspect 0.3-3.33, filled with the mean colour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from alreid.errors import ConfigError


def parse_size(value: object) -> tuple[int, int]:
    """128 -> (128, 128); "256x128" -> (256, 128); [256, 128] -> (256, 128); (height, width)."""
    if isinstance(value, bool):
        raise ConfigError(f"image_size must be an integer, HxW or [H, W]; got {value!r}")
    if isinstance(value, (int, np.integer)):
        h = w = int(value)
    elif isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts if p.strip()]
        except ValueError:
            raise ConfigError(f"image_size must be an integer, HxW or [H, W]; got {value!r}") from None
        if len(nums) == 1:
            nums = nums * 2
        if len(nums) != 2:
            raise ConfigError(f"image_size must be an integer, HxW or [H, W]; got {value!r}")
        h, w = nums
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        h, w = (int(v) for v in value)
    else:
        raise ConfigError(f"image_size must be an integer, HxW or [H, W]; got {value!r}")
    if min(h, w) < 16 or max(h, w) > 2048:
        raise ConfigError(f"image_size {h}x{w} is out of range (16..2048 pixels per side)")
    return h, w


@dataclass(frozen=True)
class InputSpec:
    """How a row becomes a network input: size (h, w), resize mode and the weights' normalisation."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "squash"

    def key(self) -> str:
        """Identifies the test transform in feature-cache keys."""
        m = ",".join(f"{v:.4f}" for v in self.mean)
        s = ",".join(f"{v:.4f}" for v in self.std)
        return f"{self.size[0]}x{self.size[1]}:{self.resize}:bicubic:mean={m}:std={s}"

    def normalise(self, batch: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                  channels_last: bool = False) -> torch.Tensor:
        """(b, h, w, 3) uint8 -> (b, 3, h, w) float32 normalised, on ``device``."""
        if isinstance(batch, np.ndarray) and not (batch.flags.writeable and batch.flags.c_contiguous):
            batch = np.array(batch)  # torch wants writable memory; cached arrays are read-only
        x = torch.as_tensor(batch).to(device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


class TrainAugment:
    """SpCL's training augmentation applied to a normalised batch; the pad scales with image size."""

    def __init__(self, spec: InputSpec, *, flip: float = 0.5, pad: int | None = None, erasing: float = 0.5,
                 erase_area: tuple[float, float] = (0.02, 0.4), erase_aspect: float = 0.3) -> None:
        self.spec = spec
        self.flip = flip
        h, w = spec.size
        self.pad = int(round(10 * min(h, w) / 128)) if pad is None else int(pad)  # SpCL: 10 px at 256 x 128
        self.erasing = erasing
        self.erase_area = erase_area
        self.erase_aspect = erase_aspect

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        out = x.clone()
        flips = torch.rand(b, generator=gen) < self.flip
        if flips.any():
            sel = flips.nonzero().flatten().to(x.device)
            out[sel] = out[sel].flip(-1)
        if self.pad > 0:
            p = self.pad
            black = ((0.0 - torch.tensor(self.spec.mean)) / torch.tensor(self.spec.std)).to(x.device, x.dtype)
            padded = black.view(1, 3, 1, 1).expand(b, 3, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p:p + h, p:p + w] = out
            dy = torch.randint(0, 2 * p + 1, (b,), generator=gen).tolist()
            dx = torch.randint(0, 2 * p + 1, (b,), generator=gen).tolist()
            out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
        if self.erasing > 0:
            self._erase(out, gen)
        return out

    def _erase(self, x: torch.Tensor, gen: torch.Generator) -> None:
        """Random erasing in place: fill a random rectangle with the mean colour (0 after normalising)."""
        b, _, h, w = x.shape
        area = h * w
        lo, hi = self.erase_area
        for i in range(b):
            if float(torch.rand(1, generator=gen)) >= self.erasing:
                continue
            for _ in range(10):  # SpCL tries up to 100 times; a rectangle fits almost always within a few
                target = area * (lo + (hi - lo) * float(torch.rand(1, generator=gen)))
                lo_a, hi_a = self.erase_aspect, 1 / self.erase_aspect
                aspect = lo_a + (hi_a - lo_a) * float(torch.rand(1, generator=gen))
                eh = int(round(math.sqrt(target * aspect)))
                ew = int(round(math.sqrt(target / aspect)))
                if 0 < eh < h and 0 < ew < w:
                    y0 = int(torch.randint(0, h - eh + 1, (1,), generator=gen))
                    x0 = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
                    x[i, :, y0:y0 + eh, x0:x0 + ew] = 0.0
                    break
