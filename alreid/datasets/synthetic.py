"""A generated embedding dataset with the failure modes of real wildlife Re-ID data.

What makes camera-trap Re-ID hard, and what active learning has to fix, is built in on purpose:
- identity sizes follow a power law (1 to 60 images), so most individuals are rare;
- each identity has two viewpoint modes (left/right flank) far apart, which over-segments clusters;
- images come in encounters (bursts of near-duplicates), which makes clusters look purer than they are;
- some identities are look-alikes of another one, which under-segments clusters;
- most of the variation between photos lies in a few nuisance directions shared by all animals
  (background, light, pose), partly shared within an encounter: what Re-ID training learns to ignore,
  so that a model trained on good pseudo-labels really improves;
- about 5 % of the images belong to identities that appear only in the test split (the open set).
Everything is vectorised, so a million 128-d embeddings take seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from alreid.datasets.base import DatasetAdapter, ReidDataset, parse_kv
from alreid.errors import DatasetError


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of the generator; defaults give a nyala-sized dataset (about 2,000 images)."""

    n_images: int = 2000
    dim: int = 128
    max_size: int = 60
    size_exponent: float = 1.3
    view_spread: float = 1.0
    encounter_spread: float = 0.5
    noise: float = 1.2
    nuisance_dim: int = 8
    nuisance: float = 1.8
    lookalike_fraction: float = 0.15
    lookalike_distance: float = 0.45
    max_encounter: int = 4
    test_fraction: float = 0.2
    test_only_fraction: float = 0.05
    seed: int = 0

    def validate(self) -> None:
        if self.n_images < 20:
            raise DatasetError(f"synthetic n_images must be >= 20; got {self.n_images}")
        if self.dim < 2:
            raise DatasetError(f"synthetic dim must be >= 2; got {self.dim}")
        if not 1 <= self.max_size <= 10_000:
            raise DatasetError(f"synthetic max_size must be in [1, 10000]; got {self.max_size}")
        for name in ("lookalike_fraction", "test_fraction", "test_only_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise DatasetError(f"synthetic {name} must be in [0, 1); got {v}")


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.standard_normal(shape, dtype=np.float32)
    v /= np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12
    return v


def _identity_sizes(rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """Power-law identity sizes in [1, max_size] summing to exactly ``n_images``."""
    support = np.arange(1, spec.max_size + 1, dtype=np.int64)
    p = support.astype(np.float64) ** (-spec.size_exponent)
    p /= p.sum()
    mean = float((support * p).sum())
    chunks, total = [], 0
    while total < spec.n_images:  # draw until the sizes cover n_images (one round almost always)
        draw = rng.choice(support, size=max(16, int(np.ceil((spec.n_images - total) / mean * 1.2))), p=p)
        chunks.append(draw)
        total += int(draw.sum())
    sizes = np.concatenate(chunks)
    keep = int(np.searchsorted(np.cumsum(sizes), spec.n_images)) + 1
    sizes = sizes[:keep].copy()
    sizes[-1] -= int(sizes.sum() - spec.n_images)  # trims the last identity, which stays >= 1
    return sizes


def generate(spec: SyntheticSpec) -> ReidDataset:
    """Generate the dataset described by ``spec`` (deterministic for ``spec.seed``)."""
    spec.validate()
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x5E7]))
    sizes = _identity_sizes(rng, spec)
    n_ids, n, d = len(sizes), int(sizes.sum()), spec.dim

    centres = _unit(rng, (n_ids, d))
    # look-alikes: an identity placed near another one
    n_look = int(round(spec.lookalike_fraction * n_ids))
    lookalike_of = np.full(n_ids, -1, dtype=np.int64)
    if n_look and n_ids > 1:
        who = rng.choice(n_ids, size=n_look, replace=False)
        partner = rng.integers(0, n_ids - 1, size=n_look)
        partner = partner + (partner >= who)
        # chains are fine; only move an identity once, towards the original centre of its partner
        centres[who] = centres[partner] + spec.lookalike_distance * _unit(rng, (n_look, d))
        centres[who] /= np.linalg.norm(centres[who], axis=1, keepdims=True)
        lookalike_of[who] = partner

    ident = np.repeat(np.arange(n_ids), sizes)
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rank = np.arange(n) - start
    view = rng.integers(0, 2, size=n)
    enc_len = rng.integers(1, spec.max_encounter + 1, size=n_ids)
    enc_local = rank // enc_len[ident]
    encounter = ident * (spec.max_size + 1) + enc_local
    enc_codes, enc_index = np.unique(encounter, return_inverse=True)
    # the views of one encounter are the same photo session: same side throughout
    first_of_enc = np.zeros(len(enc_codes), dtype=np.int64)
    first_of_enc[enc_index[::-1]] = np.arange(n)[::-1]
    view = view[first_of_enc][enc_index]

    view_dirs = _unit(rng, (n_ids, 2, d)) * spec.view_spread
    enc_dirs = _unit(rng, (len(enc_codes), d)) * spec.encounter_spread
    x = rng.standard_normal((n, d), dtype=np.float32) * np.float32(spec.noise / np.sqrt(d))
    x += centres[ident]
    x += view_dirs[ident, view]
    x += enc_dirs[enc_index]
    if spec.nuisance_dim > 0 and spec.nuisance > 0:
        basis = np.linalg.qr(rng.standard_normal((d, spec.nuisance_dim)))[0].T.astype(np.float32)
        coords = rng.standard_normal((len(enc_codes), spec.nuisance_dim), dtype=np.float32)[enc_index]
        coords += rng.standard_normal((n, spec.nuisance_dim), dtype=np.float32)
        x += (coords * np.float32(spec.nuisance / np.sqrt(2 * spec.nuisance_dim))) @ basis
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    split = _split(rng, ident, enc_index, sizes, spec)
    names = np.char.add("id", np.char.zfill(np.arange(n_ids).astype(str), len(str(n_ids))))
    meta = pd.DataFrame({
        "image_id": np.arange(n),
        "identity": names[ident],
        "path": np.char.add(np.char.add(names[ident], "/img"), np.arange(n).astype(str)),
        "orientation": np.where(view == 0, "left", "right"),
        "encounter": enc_index,
        "split": split,
        "lookalike_of": np.where(lookalike_of[ident] >= 0, names[np.maximum(lookalike_of[ident], 0)], ""),
        "dataset": "synthetic",
        "species": "synthetic",
    })
    return ReidDataset(name=f"synthetic(seed={spec.seed})", metadata=meta, features=x.astype(np.float32),
                       info={"spec": asdict(spec), "n_identities": int(n_ids)})


def _split(rng: np.random.Generator, ident: np.ndarray, enc_index: np.ndarray, sizes: np.ndarray,
           spec: SyntheticSpec) -> np.ndarray:
    """Open-set split: test-only identities, then whole encounters of the rest to test."""
    n = len(ident)
    order = rng.permutation(len(sizes))
    cum = np.cumsum(sizes[order])
    n_test_only = int(np.searchsorted(cum, spec.test_only_fraction * n))
    test_only = np.zeros(len(sizes), dtype=bool)
    test_only[order[:n_test_only]] = True
    is_test = test_only[ident]
    # encounters of the remaining identities go to test with probability chosen to hit the target
    remaining = (spec.test_fraction * n - is_test.sum()) / max(1, (~is_test).sum())
    enc_to_test = rng.random(enc_index.max() + 1) < max(0.0, remaining)
    is_test |= enc_to_test[enc_index] & (sizes[ident] > 1)
    return np.where(is_test, "test", "train")


class SyntheticAdapter(DatasetAdapter):
    """Generated wildlife-like embeddings; options as ``synthetic:n_images=5000,dim=64``."""

    name = "synthetic"
    description = "generated wildlife-like embeddings (power-law sizes, two views, look-alikes, open set)"
    has_images = False

    def load(self, arg: str | None, *, seed: int = 0) -> ReidDataset:
        opts = parse_kv(arg, source="synthetic dataset")
        types = {f.name: f.type for f in fields(SyntheticSpec)}
        kwargs: dict[str, object] = {}
        for key, raw in opts.items():
            if key not in types:
                raise DatasetError(f"unknown synthetic option {key!r}; valid: {', '.join(types)}")
            try:
                kwargs[key] = int(raw) if types[key] in ("int", int) else float(raw)
            except ValueError:
                raise DatasetError(f"synthetic option {key}={raw!r} is not a number") from None
        kwargs.setdefault("seed", 0)
        ds = generate(SyntheticSpec(**kwargs))  # type: ignore[arg-type]
        ds.name = f"synthetic:{arg}" if arg else "synthetic"  # the generator's seed is not the trial's seed
        return ds
