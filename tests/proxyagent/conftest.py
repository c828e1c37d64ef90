"""Both data paths: tests that use ``data_path`` run once on the native relay and once on the Python path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxyagent.http import native_relay
from tests.proxyagent.mesh_harness import DATA_PATH_ENV, TwoHops, destination, mesh
from tests.proxyagent.sample_app import running_app


@pytest.fixture(params=["native", "python"])
def data_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which path the harness's agents serve plain requests with (the Python path serves everything else)."""
    path: str = request.param
    if path == "native" and not native_relay.AVAILABLE:
        pytest.skip("the native relay is not built here (no C compiler): the Python path serves every request")
    monkeypatch.setenv(DATA_PATH_ENV, path)
    return path


@pytest.fixture
def two_hops() -> Iterator[TwoHops]:
    """web's sidecar calling reviews' sidecar in front of a sample app."""
    with running_app("reviews-app") as app, mesh() as built:
        reviews = built.agent("reviews", app.port)
        web = built.agent("web", 1)
        built.configure(web, 1, destination("reviews", reviews.ports["inbound"]))
        yield TwoHops(built, web, reviews, app)
