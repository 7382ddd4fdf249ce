"""Active-learning samplers: plugins behind :class:`~alreid.samplers.base.Sampler` that choose pairs to ask."""

from alreid.samplers.base import NeighbourCache, Sampler, SamplingContext, check_pairs

__all__ = ["NeighbourCache", "Sampler", "SamplingContext", "check_pairs"]
