"""Fixtures of the annotate tests: a small photo dataset and sessions over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("fastapi", reason="alreid annotate needs fastapi (pip install -e '.[test]')")

from tests.annotate.helpers import make_photos  # noqa: E402


class Clock:
    """A settable clock, so lease expiry is tested without sleeping."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> str:
    """24 photos of 4 individuals, identities unknown (a user's own photos)."""
    return make_photos(tmp_path_factory.mktemp("photos") / "zoo", unknown=True)


@pytest.fixture(scope="session")
def known_photos(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same kind of photos with identities known (answers can be checked, metrics computed)."""
    return make_photos(tmp_path_factory.mktemp("known") / "zoo", unknown=False)


@pytest.fixture
def make_session(tmp_path: Path) -> Callable[..., Any]:
    """Build a started Session (and its TestClient) over a dataset spec."""
    from fastapi.testclient import TestClient

    from alreid.annotate.app import create_app
    from alreid.annotate.session import Session
    from alreid.annotate.store import AnnotationStore
    from alreid.harness.settings import make_trial_config

    made = []

    def build(spec: str, *, store: str = "s.sqlite", token: str | None = None, read_only: bool = False,
              clock: Callable[[], float] | None = None, lease_seconds: float = 300.0, **cfg: Any):
        settings = {"dataset": spec, "method": "random", "cycles": 2, "budget_pairs": 10, **cfg}
        kwargs = {"clock": clock} if clock is not None else {}
        s = Session(AnnotationStore(tmp_path / store), make_trial_config(settings), read_only=read_only,
                    lease_seconds=lease_seconds, log=lambda _m: None, **kwargs).start()
        made.append(s)
        return s, TestClient(create_app(s, token=token))

    yield build
    for s in made:
        s.store.close()
