"""Active-learning samplers (plugins behind :class:`~alreid.methods.base.Sampler`) and trainers."""

from alreid.methods.base import NeighbourCache, Sampler, SamplingContext, check_pairs

__all__ = ["NeighbourCache", "Sampler", "SamplingContext", "check_pairs"]
