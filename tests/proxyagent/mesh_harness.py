"""Agents in a background event loop, wired to sample apps with a static config (no control plane)."""

from __future__ import annotations

import asyncio
import gc
import http.client
import os
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from proxyagent.agent import Agent, AgentConfig
from proxyagent.protocol.v1 import snapshot_pb2
from tests.proxyagent.sample_app import AppServer

T = TypeVar("T")
# "python" turns the native relay off in the harness's agents (tests/proxyagent/conftest.py: data_path).
DATA_PATH_ENV = "MESH_TEST_DATA_PATH"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class Mesh:
    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.agents: list[Agent] = []

    def agent(self, service: str, app_port: int, **overrides: Any) -> Agent:
        """An agent on free ports; static (no control plane) unless ``control_plane`` is given."""
        settings: dict[str, Any] = {
            "namespace": "shop",
            "outbound_port": 0,
            "inbound_port": 0,
            "admin_port": 0,
            "admin_http_port": 0,
            "control_plane": "",
            "drain_timeout_s": 1.0,
            "native_relay": os.environ.get(DATA_PATH_ENV, "native") == "native",
        }
        config = AgentConfig(service=service, app_port=app_port, **{**settings, **overrides})
        agent = Agent(config)
        self.loop.run(agent.start())
        self.agents.append(agent)
        return agent

    def configure(self, agent: Agent, version: int, *destinations: snapshot_pb2.Destination) -> None:
        async def apply() -> tuple[bool, str]:
            return agent.store.apply(snapshot_pb2.Snapshot(version=version, destinations=list(destinations)))

        accepted, reason = self.loop.run(apply())
        assert accepted, reason

    def apply(self, agent: Agent, snapshot: snapshot_pb2.Snapshot) -> tuple[bool, str]:
        """Apply a whole snapshot (inbound policy, policy version) on the agent's loop; (accepted, reason)."""

        async def apply() -> tuple[bool, str]:
            return agent.store.apply(snapshot)

        return self.loop.run(apply())

    def stop(self) -> None:
        # Callers first (they were started last): a callee then never sees a connection arrive as it stops.
        for agent in reversed(self.agents):
            self.loop.run(agent.stop())


def destination(
    service: str, *ports: int, workloads: list[str] | None = None, least_request: bool = False, timeout_ms: int = 0
) -> snapshot_pb2.Destination:
    names = workloads or [f"{service}-v1"] * len(ports)
    return snapshot_pb2.Destination(
        service=service,
        namespace="shop",
        load_balancer=snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST
        if least_request
        else snapshot_pb2.LOAD_BALANCER_ROUND_ROBIN,
        endpoints=[
            snapshot_pb2.Endpoint(address="127.0.0.1", port=p, workload=w) for p, w in zip(ports, names, strict=True)
        ],
        request_timeout_ms=timeout_ms,
    )


@contextmanager
def mesh() -> Iterator[Mesh]:
    loop = LoopThread()
    built = Mesh(loop)
    try:
        yield built
    finally:
        built.stop()
        loop.close()
        # Free now what the closed loop still referenced: a socket left unclosed is then reported in the
        # test that left it, not in whichever later test the collector happens to run in.
        gc.collect()


@dataclass
class TwoHops:
    mesh: Mesh
    web: Agent  # the caller's sidecar
    reviews: Agent  # the callee's sidecar
    app: AppServer  # the callee app

    def client(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.web.ports["outbound"], timeout=30)

    def get(self, path: str, host: str = "reviews", **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = self.client()
        try:
            conn.request("GET", path, headers={"Host": host, **headers})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def request(
    port: int,
    path: str = "/",
    *,
    method: str = "GET",
    host: str = "reviews",
    body: bytes | None = None,
    timeout_s: float = 30,
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection to ``port``: (status, lowercase headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **headers})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def scrape(agent: Agent) -> str:
    """The agent's /metrics page."""
    status, _, body = request(agent.ports["admin_http"], "/metrics", host="localhost")
    assert status == 200
    return body.decode()
