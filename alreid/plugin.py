"""scikit-learn's constructor contract, shared by every plugin kind.

Hyperparameters are keyword-only constructor arguments stored verbatim under the same names, so
``get_params`` is derived from the signature and a plugin can be rebuilt from ``{name, params}``
anywhere (a Ray worker, a resumed trial) with unknown names rejected up front.

A family of plugins that shares a long parameter list (the image trainers) declares it once as
``param_defaults`` instead of writing the signature in every class: :class:`Configurable` then
generates a keyword-only ``__init__`` with exactly that signature (so ``inspect.signature``,
``help()``, ``get_params`` and ``from_params`` see the same names and defaults).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, TypeVar

from alreid.errors import ConfigError

P = TypeVar("P", bound="Configurable")


class Configurable:
    """Mixin: ``get_params`` / ``from_params`` / ``repr`` from the ``__init__`` signature."""

    name: str = ""
    kind: str = "plugin"
    #: declared parameters (name -> default), for classes that do not write their own ``__init__``;
    #: a subclass extends or narrows its parent's set with an ordinary dict expression, e.g.
    #: ``param_defaults = {**Parent.param_defaults, "eps": 0.6}``. Every declared default is also
    #: a class attribute, so a subclass that drops a parameter from its set still reads the default.
    param_defaults: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("param_defaults")
        if declared is None:
            return
        for key, value in declared.items():
            setattr(cls, key, value)
        if "__init__" not in cls.__dict__:
            cls.__init__ = _declared_init(cls.__name__, dict(declared))  # type: ignore[method-assign]

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


def _declared_init(owner: str, defaults: dict[str, Any]) -> Callable[..., None]:
    """A keyword-only ``__init__`` storing ``defaults`` (or the given values) verbatim, with a real signature."""

    def __init__(self: Any, **params: Any) -> None:
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"{owner}() got unexpected keyword argument(s) {', '.join(unknown)}")
        for key, default in defaults.items():
            setattr(self, key, params.get(key, default))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [self_param] + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()],
        return_annotation=None)
    __init__.__qualname__ = f"{owner}.__init__"
    return __init__


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


def check_choice(owner: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """ConfigError naming the owner, the parameter, the allowed values and the received one."""
    if not any(value == c and type(value) is type(c) for c in choices):
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{owner} parameter {name} must be one of {allowed}; got {value!r}")
