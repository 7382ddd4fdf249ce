"""The shared sampler contract, run over every registered sampler (new plugins join automatically)."""

from __future__ import annotations

import pytest

from alreid.registry import SAMPLERS
from alreid.testing import check_sampler


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_contract(name):
    check_sampler(name)
