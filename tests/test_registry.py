import pytest

from alreid.errors import UnknownPluginError
from alreid.samplers.base import Sampler
from alreid.registry import DATASETS, SAMPLERS, TRAINERS, Registry


def test_builtins_listed_and_loadable():
    assert {"random", "none", "aas", "gbas", "lbas", "nis"} <= set(SAMPLERS.names())
    assert SAMPLERS.get("random").name == "random"
    assert {"head"} <= set(TRAINERS.names())
    assert {"synthetic", "embeddings"} <= set(DATASETS.names())


def test_unknown_name_suggests_and_lists():
    with pytest.raises(UnknownPluginError) as err:
        SAMPLERS.get("randm")
    msg = str(err.value)
    assert "did you mean random" in msg and "known samplers:" in msg and "aas" in msg


def test_entry_points_agree_with_builtin_table():
    """The installed entry points and the fallback table must name the same targets (else duplicates)."""
    from importlib.metadata import entry_points

    for reg in (SAMPLERS, TRAINERS, DATASETS):
        eps = {ep.name: ep.value for ep in entry_points(group=reg.group)}
        for name, target in reg._builtins.items():
            assert eps.get(name, target) == target, (reg.group, name)


def test_duplicate_third_party_name_is_an_error(monkeypatch):
    import alreid.registry as regmod

    class FakeEP:
        name, value, dist = "random", "other_pkg.mod:Other", None

    monkeypatch.setattr(regmod, "entry_points", lambda group: [FakeEP()])
    reg = Registry("sampler", "alreid.samplers", {"random": "alreid.samplers.random_pairs:RandomSampler"})
    with pytest.raises(UnknownPluginError, match="registered twice"):
        reg.names()


def test_runtime_registration():
    class Mine(Sampler):
        name = "mine"
        description = "test"

        def __init__(self) -> None:
            pass

        def _select(self, ctx, budget, rng):
            return []

    SAMPLERS.register("mine", Mine)
    try:
        assert SAMPLERS.get("mine") is Mine and "mine" in SAMPLERS.names()
    finally:
        SAMPLERS.unregister("mine")
