"""/ws/live/: a subscribed browser gets a snapshot, then deltas after traffic; other namespaces are refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from meshui.accounts.models import RoleBinding
from meshui.catalog.models import Namespace
from meshui.meshcontrol.server import MeshControlServer
from meshui.telemetry.live import graph_group
from proxyagent.metric_export import MetricExporter
from proxyagent.metrics import MeshMetrics
from tests.asgi_server import serving

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE_S = 20.0


@pytest.fixture
def web(_fast_password_hashing: Any) -> Iterator[str]:
    with serving() as address:
        yield address


@pytest.fixture
async def grpc_server(transactional_db: None) -> AsyncIterator[MeshControlServer]:
    running = MeshControlServer("127.0.0.1:0")
    await running.start()
    yield running
    await running.stop(grace=0)


@sync_to_async
def _viewer_of(namespace: str) -> str:
    shop = Namespace.objects.get_or_create(name=namespace)[0]
    Namespace.objects.get_or_create(name="vault")
    user = User.objects.create_user(username="vera", password="correct horse battery staple")
    RoleBinding.objects.create(user=user, role="viewer", namespace=shop)
    client = Client()
    assert client.login(username="vera", password="correct horse battery staple")
    return str(client.cookies["sessionid"].value)


async def _open(web: str, cookie: str) -> ClientConnection:
    return await connect(
        f"ws://{web}/ws/live/", origin=Origin(f"http://{web}"), additional_headers={"Cookie": f"sessionid={cookie}"}
    )


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind} message within {DEADLINE_S} s"
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if message["type"] == kind:
            return message


async def test_a_subscriber_gets_a_snapshot_then_deltas_after_traffic(web: str, grpc_server: MeshControlServer) -> None:
    cookie = await _viewer_of("shop")
    ws = await _open(web, cookie)
    try:
        await ws.send(json.dumps({"type": "subscribe", "topic": "graph", "namespace": "shop", "window": "1m"}))
        snapshot = await _next(ws, "snapshot")
        assert (snapshot["namespace"], snapshot["edges"]) == ("shop", [])
        # The dashboard folds deltas into the snapshot and judges health the way the server does.
        assert snapshot["health_thresholds"] == {"degraded": 0.001, "failing": 0.10}

        metrics = MeshMetrics()
        exporter = MetricExporter(
            f"127.0.0.1:{grpc_server.port}", {"service.name": "web", "service.namespace": "shop"}, metrics
        )
        for status_class, n in (("2xx", 9), ("5xx", 1)):
            for _ in range(n):
                metrics.observe(
                    ("outbound", "web-v1", "reviews.shop", "reviews-v1", "false", status_class),
                    seconds=0.003,
                    request_bytes=0,
                    response_bytes=10,
                    failed=status_class == "5xx",
                )
        assert await exporter.export()
        await exporter.close()

        delta = await _next(ws, "delta")
        assert delta["namespace"] == "shop"
        (edge,) = delta["edges"]
        assert (edge["source"], edge["destination"]) == ("web.shop", "reviews.shop")
        assert (edge["requests"], edge["errors"], edge["bytes"]) == (10, 1, 100)
        assert 2.5 < edge["p99_ms"] <= 5

        # A gap in the numbering (messages the layer dropped for a slow consumer) brings a fresh snapshot.
        await get_channel_layer().group_send(
            graph_group("shop"),
            {"type": "graph.delta", "namespace": "shop", "seq": 10_000, "edges": []},
        )
        fresh = await _next(ws, "snapshot")
        assert [e["requests"] for e in fresh["edges"]] == [10], "the snapshot holds what was stored"
    finally:
        await ws.close()


async def test_a_service_subscriber_gets_its_series_then_inbound_and_outbound_deltas(
    web: str, grpc_server: MeshControlServer
) -> None:
    cookie = await _viewer_of("shop")
    ws = await _open(web, cookie)
    try:
        await ws.send(json.dumps({"type": "subscribe", "topic": "service", "service": "reviews.shop", "window": "1m"}))
        snapshot = await _next(ws, "service_snapshot")
        assert (snapshot["service"], snapshot["step_s"], len(snapshot["inbound"])) == ("reviews.shop", 10, 6)
        assert sum(point["requests"] for point in snapshot["inbound"] + snapshot["outbound"]) == 0
        # Another service of the same namespace shares its group; leaving it must not leave reviews.shop's.
        await ws.send(json.dumps({"type": "subscribe", "topic": "service", "service": "ratings.shop"}))
        assert (await _next(ws, "service_snapshot"))["service"] == "ratings.shop"
        await ws.send(json.dumps({"type": "unsubscribe", "topic": "service", "service": "ratings.shop"}))

        metrics = MeshMetrics()
        exporter = MetricExporter(
            f"127.0.0.1:{grpc_server.port}", {"service.name": "reviews", "service.namespace": "shop"}, metrics
        )
        for key, n in (
            (("inbound", "web-v1", "reviews.shop", "reviews-v1", "true", "2xx"), 4),
            (("outbound", "reviews-v1", "ratings.shop", "ratings-v1", "true", "5xx"), 2),
            (("outbound", "reviews-v1", "details.other", "details-v1", "false", "2xx"), 1),
        ):
            for _ in range(n):
                metrics.observe(key, seconds=0.02, request_bytes=0, response_bytes=5, failed=key[5] == "5xx")
        assert await exporter.export()
        await exporter.close()

        delta = await _next(ws, "service_delta")
        assert delta["service"] == "reviews.shop"
        assert (delta["inbound"]["requests"], delta["inbound"]["errors"], delta["inbound"]["bytes"]) == (4, 0, 20)
        assert (delta["outbound"]["requests"], delta["outbound"]["errors"]) == (3, 2)
        assert 10 < delta["inbound"]["p50_ms"] <= 25
        assert delta["inbound"]["in_flight"] > 0
    finally:
        await ws.close()


@pytest.mark.parametrize(
    "subscribe",
    [
        {"type": "subscribe", "topic": "graph", "namespace": "vault"},
        {"type": "subscribe", "topic": "service", "service": "ledger.vault"},
    ],
    ids=["graph", "service"],
)
async def test_a_namespace_the_user_may_not_view_is_refused(
    web: str, grpc_server: MeshControlServer, subscribe: dict[str, str]
) -> None:
    cookie = await _viewer_of("shop")
    ws = await _open(web, cookie)
    await ws.send(json.dumps(subscribe))
    assert (await _next(ws, "error"))["detail"].startswith("You may not view")
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), DEADLINE_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_nonsense_gets_an_error_not_a_crash(web: str, grpc_server: MeshControlServer) -> None:
    cookie = await _viewer_of("shop")
    ws = await _open(web, cookie)
    try:
        for bad in (
            {"type": "dance"},
            {"type": "subscribe", "topic": "graph"},
            {"type": "subscribe", "topic": "graph", "namespace": "shop", "window": "1y"},
            {"type": "subscribe", "topic": "service", "service": "no-namespace"},
            {"type": "subscribe", "topic": "logs", "namespace": "shop"},
        ):
            await ws.send(json.dumps(bad))
            assert (await _next(ws, "error"))["detail"]
    finally:
        await ws.close()
