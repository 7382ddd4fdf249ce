"""Typed settings of the base clustering and of NP3, read by the trial, samplers and trainers alike.

They live here, below the harness, so a sampler reads ``ctx.clustering.k1`` (one typed object with
one set of defaults) instead of a dict with its own fallbacks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class ClusteringSettings(_Strict):
    """The base clustering every cycle starts from (SpCL's: DBSCAN on k-reciprocal Jaccard)."""

    method: Literal["jaccard", "cosine"] = "jaccard"
    k1: int = Field(30, ge=2)
    k2: int = Field(6, ge=1)
    eps: float = Field(0.6, gt=0.0, le=1.0)
    min_samples: int = Field(4, ge=1)
    knn_index: Literal["exact", "hnsw"] = "exact"


class Np3Settings(_Strict):
    """NP3's choices where the paper is silent (spec 1.10, ASSUMPTION register)."""

    exact_colouring_max: int = Field(12, ge=0)
    colouring: Literal["dsatur", "largest_first"] = "dsatur"
    cost: Literal["cosine", "euclidean"] = "cosine"
    unconstrained: Literal["nearest"] = "nearest"
