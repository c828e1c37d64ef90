"""Live metrics over WebSockets: a snapshot on subscribe, then compact deltas every second at most.

Two topics: the graph of a namespace, and one service's inbound and outbound
metrics. The metrics writer publishes each committed batch of increments to
two Channels groups per namespace it touches (its graph, and its services'
sides together, so a mesh of a thousand services is still a few messages per
batch), numbered per group. A subscribed socket sends what arrives at once
when it sent nothing in the last second, else gathers it until a second has
passed (at most one push a second, and no wait for a tick when traffic is
sparse); a gap in the numbers means the channel layer dropped messages for
a slow consumer (its queue is bounded), and the socket gets a fresh snapshot
instead of a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from meshui.telemetry.graph import (
    Totals,
    buckets_in,
    build_graph,
    health_thresholds_body,
    node_ids,
    series,
    service_sides,
    touching,
    window_bounds,
)
from meshui.telemetry.models import Reporter
from meshui.telemetry.otlp_metrics import RAW_RESOLUTION_S, EdgeIncrement, EdgeKey
from meshui.telemetry.query import visible_namespaces

CLOSE_FORBIDDEN = 4403
PUSH_INTERVAL_S = 1.0
_WINDOWS = {"1m": 60, "5m": 300, "15m": 900}
GRAPH = "graph"
SERVICE = "service"
# What the subscribe message names, by topic.
_SUBJECT_FIELD = {GRAPH: "namespace", SERVICE: "service"}
# Channels group names: ASCII letters, digits, hyphens, underscores and periods, under 100 characters.
_GROUP_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,80}$")

Topic = tuple[str, str]  # (GRAPH, namespace) or (SERVICE, "name.namespace")


def _group(prefix: str, namespace: str) -> str:
    if not _GROUP_SAFE.match(namespace):
        namespace = hashlib.sha256(namespace.encode()).hexdigest()[:40]
    return f"{prefix}.{namespace}"


def graph_group(namespace: str) -> str:
    return _group("graph", namespace)


def services_group(namespace: str) -> str:
    return _group("services", namespace)


def topic_group(topic: Topic) -> str:
    """The group a topic's deltas arrive on: its namespace's graph, or its namespace's services."""
    kind, subject = topic
    return graph_group(subject) if kind == GRAPH else services_group(subject.rpartition(".")[2])


def _sums(e: EdgeIncrement) -> list[Any]:
    return [e.requests, e.errors, e.request_bytes + e.response_bytes, e.latency_sum_s, e.latency_counts]


class LivePublisher:
    def __init__(self) -> None:
        self._layer = get_channel_layer()
        self._seq: defaultdict[str, int] = defaultdict(int)

    async def publish(self, increments: dict[EdgeKey, EdgeIncrement]) -> None:
        edges: defaultdict[str, dict[tuple[str, str], EdgeIncrement]] = defaultdict(dict)
        # Per service: its inbound and outbound sides, as ServiceMetricsView reads them.
        sides: defaultdict[str, dict[str, EdgeIncrement]] = defaultdict(dict)
        for key, increment in increments.items():
            if key[1] == Reporter.INBOUND:
                sides[key[5]].setdefault("inbound", EdgeIncrement()).add(increment)
                continue
            source, destination = node_ids((key[2], key[3], key[5]), "service")
            if key[3]:
                sides[source].setdefault("outbound", EdgeIncrement()).add(increment)
            for namespace in {key[2], destination.rpartition(".")[2]}:
                edges[namespace].setdefault((source, destination), EdgeIncrement()).add(increment)
        for namespace, by_edge in edges.items():
            await self._send(
                graph_group(namespace),
                {"type": "graph.delta", "namespace": namespace,
                 "edges": [[s, d, *_sums(e)] for (s, d), e in by_edge.items()]},
            )  # fmt: skip
        by_namespace: defaultdict[str, dict[str, dict[str, list[Any]]]] = defaultdict(dict)
        for service, by_side in sides.items():
            by_namespace[service.rpartition(".")[2]][service] = {side: _sums(e) for side, e in by_side.items()}
        for namespace, services in by_namespace.items():
            await self._send(
                services_group(namespace), {"type": "service.delta", "namespace": namespace, "services": services}
            )

    async def _send(self, group: str, message: dict[str, Any]) -> None:
        self._seq[group] += 1
        await self._layer.group_send(group, {**message, "seq": self._seq[group]})


def _live_window(seconds: int) -> tuple[dt.datetime, dt.datetime, int]:
    # The bucket still filling counts too: a live view shows the last seconds.
    return window_bounds(timezone.now() + dt.timedelta(seconds=RAW_RESOLUTION_S), seconds)


def _graph_snapshot(namespace: str, seconds: int) -> dict[str, Any]:
    start, end, resolution = _live_window(seconds)
    buckets = buckets_in(start, end, resolution).filter(touching([namespace]), reporter=Reporter.OUTBOUND)
    graph = build_graph(buckets, "service", seconds)
    return {
        "type": "snapshot",
        "namespace": namespace,
        "window_s": seconds,
        "at": end.isoformat(),
        "health_thresholds": health_thresholds_body(),
        **graph,
    }


def _service_snapshot(service: str, seconds: int) -> dict[str, Any]:
    start, end, resolution = _live_window(seconds)
    inbound, outbound = service_sides(buckets_in(start, end, resolution), service)
    points = seconds // resolution
    return {
        "type": "service_snapshot",
        "service": service,
        "window_s": seconds,
        "step_s": resolution,
        "at": end.isoformat(),
        "inbound": series(inbound, start, points, resolution),
        "outbound": series(outbound, start, points, resolution),
    }


@dataclass
class _Subscription:
    window_s: int
    stale: bool = False
    # What arrived since the last push, by edge or side.
    pending: dict[Any, Totals] = field(default_factory=dict)


def _add_sums(pending: dict[Any, Totals], key: Any, sums: list[Any]) -> None:
    """Add one ``_sums`` list from a message to ``pending[key]``."""
    requests, errors, size, latency_s, counts = sums
    totals = Totals(requests, errors, size, 0, counts, latency_s)
    current = pending.get(key)
    if current is None:
        pending[key] = totals
    else:
        current.add_totals(totals)


def _describe(totals: Totals, seconds: float) -> dict[str, Any]:
    p50, p95, p99 = totals.percentiles_ms()
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "bytes": totals.bytes,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "in_flight": totals.in_flight(seconds),
    }


class LiveGraphConsumer(AsyncJsonWebsocketConsumer):
    """``{"type": "subscribe", "topic": "graph", "namespace": "shop", "window": "1m"}`` or
    ``{"type": "subscribe", "topic": "service", "service": "reviews.shop"}``, then snapshots and deltas.

    Only logged-in users reach it (``RequireAuthenticatedUser``); a namespace the
    user may not view closes the socket with 4403.
    """

    async def connect(self) -> None:
        self.subscriptions: dict[Topic, _Subscription] = {}
        # The last message number seen per group, to notice messages the layer dropped.
        self.group_seq: dict[str, int] = {}
        # The task that sends what is pending once a second has passed since the last push.
        self.flusher: asyncio.Task[None] | None = None
        self.last_push = asyncio.get_running_loop().time() - PUSH_INTERVAL_S
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            # Whatever ended the flusher, the socket still leaves its groups.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.flusher
        for group in {topic_group(topic) for topic in self.subscriptions}:
            await self.channel_layer.group_discard(group, self.channel_name)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder, separators=(",", ":"))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") not in ("subscribe", "unsubscribe"):
            await self.send_json({"type": "error", "detail": 'Send {"type": "subscribe", "topic": "graph", ...}.'})
            return
        kind = content.get("topic")
        subject_field = _SUBJECT_FIELD.get(kind) if isinstance(kind, str) else None
        subject = content.get(subject_field) if subject_field else None
        if subject_field is None or not isinstance(subject, str) or not subject:
            await self.send_json(
                {"type": "error", "detail": "Give topic 'graph' and a namespace, or topic 'service' and a service."}
            )
            return
        if kind == SERVICE and "." not in subject:
            await self.send_json({"type": "error", "detail": "Name the service as name.namespace."})
            return
        topic: Topic = (str(kind), subject)
        if content["type"] == "unsubscribe":
            self.subscriptions.pop(topic, None)
            group = topic_group(topic)
            if all(topic_group(other) != group for other in self.subscriptions):
                await self.channel_layer.group_discard(group, self.channel_name)
                self.group_seq.pop(group, None)
            return
        window = _WINDOWS.get(str(content.get("window", "1m")))
        if window is None:
            await self.send_json({"type": "error", "detail": f"window is one of {sorted(_WINDOWS)}."})
            return
        namespace = subject if kind == GRAPH else subject.rpartition(".")[2]
        visible = await database_sync_to_async(visible_namespaces)(self.scope["user"])
        if visible is not None and namespace not in visible:
            await self.send_json({"type": "error", "detail": f"You may not view namespace {namespace!r}."})
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.subscriptions[topic] = _Subscription(window)
        # Join first, then read: a delta committed in between arrives twice rather than never.
        await self.channel_layer.group_add(topic_group(topic), self.channel_name)
        await self._send_snapshot(topic)

    def _in_sequence(self, group: str, seq: int) -> bool:
        """Whether a group's message follows the last one; after a gap its topics get fresh snapshots."""
        last, self.group_seq[group] = self.group_seq.get(group), seq
        if last is None or seq == last + 1:
            return True
        for topic, subscription in self.subscriptions.items():
            if topic_group(topic) == group:
                subscription.stale = True  # messages were dropped: resend the whole picture
        self._flush_soon()
        return False

    async def graph_delta(self, event: dict[str, Any]) -> None:
        subscription = self.subscriptions.get((GRAPH, event["namespace"]))
        if self._in_sequence(graph_group(event["namespace"]), event["seq"]) and subscription is not None:
            for source, destination, *sums in event["edges"]:
                _add_sums(subscription.pending, (source, destination), sums)
            self._flush_soon()

    async def service_delta(self, event: dict[str, Any]) -> None:
        if not self._in_sequence(services_group(event["namespace"]), event["seq"]):
            return
        for service, sides in event["services"].items():
            subscription = self.subscriptions.get((SERVICE, service))
            if subscription is not None:
                for side, sums in sides.items():
                    _add_sums(subscription.pending, side, sums)
                self._flush_soon()

    async def _send_snapshot(self, topic: Topic) -> None:
        subscription = self.subscriptions.get(topic)
        if subscription is None:  # unsubscribed while a send was under way
            return
        subscription.pending = {}
        kind, subject = topic
        build = _graph_snapshot if kind == GRAPH else _service_snapshot
        await self.send_json(await database_sync_to_async(build)(subject, subscription.window_s))

    def _flush_soon(self) -> None:
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        # Until nothing waits: what arrives while this sends goes out a second later, from this same task.
        while any(subscription.pending or subscription.stale for subscription in self.subscriptions.values()):
            wait = self.last_push + PUSH_INTERVAL_S - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.last_push = loop.time()
            for topic, subscription in list(self.subscriptions.items()):
                if topic not in self.subscriptions:
                    continue
                if subscription.stale:
                    subscription.stale = False
                    await self._send_snapshot(topic)
                    continue
                if subscription.pending:
                    pending, subscription.pending = subscription.pending, {}
                    # Agents export a delta a second; in-flight is over that interval.
                    await self.send_json(_delta(topic, pending, PUSH_INTERVAL_S))


def _delta(topic: Topic, pending: dict[Any, Totals], seconds: float) -> dict[str, Any]:
    kind, subject = topic
    if kind == GRAPH:
        edges = [{"source": s, "destination": d, **_describe(sums, seconds)} for (s, d), sums in pending.items()]
        return {"type": "delta", "namespace": subject, "edges": edges}
    return {
        "type": "service_delta",
        "service": subject,
        **{side: _describe(sums, seconds) for side, sums in pending.items()},
    }
