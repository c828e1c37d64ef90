"""Whole agents (proxy included) registered with the real control plane; traffic survives its loss."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from meshui.meshcontrol.server import MeshControlServer
from proxyagent.agent import Agent
from tests.proxyagent.mesh_harness import mesh
from tests.proxyagent.sample_app import running_app

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE_S = 20.0


def _get(agent: Agent, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", agent.ports["outbound"], timeout=10)
    try:
        conn.request("GET", "/echo", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.05)  # polling interval, bounded by the deadline


def test_traffic_keeps_flowing_when_the_control_plane_dies(settings: Any) -> None:
    settings.MESH_HEARTBEAT_INTERVAL_SECONDS = 1
    with mesh() as built:
        control = MeshControlServer("127.0.0.1:0")
        port = built.loop.run(control.start())
        with running_app("reviews-app") as app:
            built.agent("reviews", app.port, control_plane=f"127.0.0.1:{port}")
            web = built.agent("web", 1, control_plane=f"127.0.0.1:{port}")
            # web learns about reviews at registration or, at the latest, from a heartbeat.
            _until(lambda: _get(web, "reviews")[0] == 200, "web reaches reviews through the mesh")
            assert json.loads(_get(web, "reviews")[1])["headers"]["x-mesh-source-workload"] == "web-v1"

            built.loop.run(control.stop(grace=0))
            assert web.client is not None
            failures_before = web.client.failures_total
            for _ in range(20):
                assert _get(web, "reviews")[0] == 200
            _until(
                lambda: web.client is not None and web.client.failures_total > failures_before,
                "the agent noticed the control plane is gone",
            )
            assert _get(web, "reviews.shop")[0] == 200, "still serving on the last good config"
