"""scikit-learn's constructor contract, shared by every plugin kind.

Hyperparameters are keyword-only constructor arguments stored verbatim under the same names, so
``get_params`` is derived from the signature and a plugin can be rebuilt from ``{name, params}``
anywhere (a Ray worker, a resumed trial) with unknown names rejected up front.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from alreid.errors import ConfigError

P = TypeVar("P", bound="Configurable")


class Configurable:
    """Mixin: ``get_params`` / ``from_params`` / ``repr`` from the ``__init__`` signature."""

    name: str = ""
    kind: str = "plugin"

    @classmethod
    def param_names(cls) -> list[str]:
        names = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must not take *args or **kwargs")
            names.append(p.name)
        return names

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {n: sig.parameters[n].default for n in cls.param_names()}

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    @classmethod
    def from_params(cls: type[P], params: dict[str, Any] | None = None) -> P:
        """Build from a dict, rejecting unknown names with the list of valid ones."""
        params = dict(params or {})
        valid = cls.param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(unknown)} for {cls.kind} {cls.name!r}; "
                f"valid: {', '.join(valid) if valid else '(none)'}")
        obj = cls(**params)
        obj.validate_params()
        return obj

    def validate_params(self) -> None:
        """Raise :class:`ConfigError` for out-of-range hyperparameters (override where needed)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_range(owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None,
                *, lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:
    """One error template for numeric hyperparameters: owner, name, allowed range, received value."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{owner} parameter {name} must be {what} in {rng}; got {value!r}")
