"""The live graph over WebSockets: a snapshot on subscribe, then compact deltas every second at most.

The metrics writer publishes each committed batch of caller-reported
increments to the Channels group of every namespace it touches, numbered per
namespace. A subscribed socket coalesces what arrives and sends it at most
once a second; a gap in the numbers means the channel layer dropped messages
for a slow consumer (its queue is bounded), and the socket gets a fresh
snapshot instead of a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections import defaultdict
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from meshui.telemetry.graph import buckets_in, build_graph, touching, window_bounds
from meshui.telemetry.histograms import percentile
from meshui.telemetry.models import Reporter
from meshui.telemetry.otlp_metrics import EdgeIncrement, EdgeKey
from meshui.telemetry.query import visible_namespaces

CLOSE_FORBIDDEN = 4403
PUSH_INTERVAL_S = 1.0
_WINDOWS = {"1m": 60, "5m": 300, "15m": 900}


def graph_group(namespace: str) -> str:
    return f"graph.{namespace}"


def _edge_ends(key: EdgeKey) -> tuple[str, str, str]:
    """(source node, destination node, destination namespace) at service level."""
    _, _, namespace, source_service, _, destination, _, _ = key
    return f"{source_service or 'unknown'}.{namespace}", destination, destination.rpartition(".")[2]


class LivePublisher:
    def __init__(self) -> None:
        self._layer = get_channel_layer()
        self._seq: defaultdict[str, int] = defaultdict(int)

    async def publish(self, increments: dict[EdgeKey, EdgeIncrement]) -> None:
        by_namespace: defaultdict[str, dict[tuple[str, str], EdgeIncrement]] = defaultdict(dict)
        for key, increment in increments.items():
            if key[1] != Reporter.OUTBOUND:
                continue
            source, destination, destination_namespace = _edge_ends(key)
            for namespace in {key[2], destination_namespace}:
                total = by_namespace[namespace].setdefault((source, destination), EdgeIncrement())
                total.add(increment)
        for namespace, edges in by_namespace.items():
            self._seq[namespace] += 1
            await self._layer.group_send(
                graph_group(namespace),
                {
                    "type": "graph.delta",
                    "namespace": namespace,
                    "seq": self._seq[namespace],
                    "edges": [
                        [source, destination, e.requests, e.errors, e.request_bytes + e.response_bytes,
                         e.latency_counts]
                        for (source, destination), e in edges.items()
                    ],
                },
            )  # fmt: skip


def _snapshot(namespace: str, seconds: int) -> dict[str, Any]:
    # The bucket still filling counts too: a live view shows the last seconds.
    start, end, resolution = window_bounds(timezone.now() + dt.timedelta(seconds=10), seconds)
    buckets = buckets_in(start, end, resolution).filter(touching([namespace]), reporter=Reporter.OUTBOUND)
    graph = build_graph(buckets, "service", seconds)
    return {"type": "snapshot", "namespace": namespace, "window_s": seconds, "at": end.isoformat(), **graph}


class LiveGraphConsumer(AsyncJsonWebsocketConsumer):
    """``{"type": "subscribe", "topic": "graph", "namespace": "shop", "window": "1m"}``, then snapshots and deltas.

    Only logged-in users reach it (``RequireAuthenticatedUser``); a namespace the
    user may not view closes the socket with 4403.
    """

    async def connect(self) -> None:
        self.subscriptions: dict[str, int] = {}  # namespace → snapshot window (s)
        self.last_seq: dict[str, int] = {}
        self.pending: defaultdict[str, dict[tuple[str, str], list[Any]]] = defaultdict(dict)
        self.stale: set[str] = set()
        self.ticker: asyncio.Task[None] | None = None
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ticker
        for namespace in self.subscriptions:
            await self.channel_layer.group_discard(graph_group(namespace), self.channel_name)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder, separators=(",", ":"))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") not in ("subscribe", "unsubscribe"):
            await self.send_json({"type": "error", "detail": 'Send {"type": "subscribe", "topic": "graph", ...}.'})
            return
        namespace = content.get("namespace")
        if content.get("topic") != "graph" or not isinstance(namespace, str) or not namespace:
            await self.send_json({"type": "error", "detail": "Give topic 'graph' and a namespace."})
            return
        if content["type"] == "unsubscribe":
            self.subscriptions.pop(namespace, None)
            await self.channel_layer.group_discard(graph_group(namespace), self.channel_name)
            return
        window = _WINDOWS.get(str(content.get("window", "1m")))
        if window is None:
            await self.send_json({"type": "error", "detail": f"window is one of {sorted(_WINDOWS)}."})
            return
        visible = await database_sync_to_async(visible_namespaces)(self.scope["user"])
        if visible is not None and namespace not in visible:
            await self.send_json({"type": "error", "detail": f"You may not view namespace {namespace!r}."})
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.subscriptions[namespace] = window
        # Join first, then read: a delta committed in between arrives twice rather than never.
        await self.channel_layer.group_add(graph_group(namespace), self.channel_name)
        await self._send_snapshot(namespace)
        if self.ticker is None:
            self.ticker = asyncio.create_task(self._tick())

    async def graph_delta(self, event: dict[str, Any]) -> None:
        namespace = event["namespace"]
        if namespace not in self.subscriptions:
            return
        last = self.last_seq.get(namespace)
        self.last_seq[namespace] = event["seq"]
        if last is not None and event["seq"] != last + 1:
            self.stale.add(namespace)  # messages were dropped: resend the whole picture
            return
        pending = self.pending[namespace]
        for source, destination, requests, errors, size, counts in event["edges"]:
            edge = pending.get((source, destination))
            if edge is None:
                pending[(source, destination)] = [requests, errors, size, list(counts)]
            else:
                edge[0] += requests
                edge[1] += errors
                edge[2] += size
                edge[3] = [a + b for a, b in zip(edge[3], counts, strict=True)]

    async def _send_snapshot(self, namespace: str) -> None:
        self.pending.pop(namespace, None)
        snapshot = await database_sync_to_async(_snapshot)(namespace, self.subscriptions[namespace])
        await self.send_json(snapshot)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(PUSH_INTERVAL_S)
            for namespace in list(self.stale):
                self.stale.discard(namespace)
                if namespace in self.subscriptions:
                    await self._send_snapshot(namespace)
            for namespace, edges in list(self.pending.items()):
                if not edges or namespace not in self.subscriptions:
                    continue
                self.pending[namespace] = {}
                await self.send_json(
                    {"type": "delta", "namespace": namespace, "edges": [_describe(k, v) for k, v in edges.items()]}
                )


def _describe(edge: tuple[str, str], totals: list[Any]) -> dict[str, Any]:
    requests, errors, size, counts = totals
    p99 = percentile(counts, 0.99)
    return {
        "source": edge[0],
        "destination": edge[1],
        "requests": requests,
        "errors": errors,
        "bytes": size,
        "p99_ms": None if p99 is None else round(p99 * 1000, 3),
    }
