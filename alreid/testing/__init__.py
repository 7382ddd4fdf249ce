"""Contract checks every plugin must pass, published so third-party plugins can run them too.

>>> from alreid.testing import check_sampler
>>> check_sampler("random")  # raises AssertionError on a broken contract
"""

from alreid.testing.sampler_checks import check_sampler, make_context

__all__ = ["check_sampler", "make_context"]
