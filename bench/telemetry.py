"""Telemetry pipeline figures, in one run: span ingest rate, graph API time, trace search, request-to-socket.

- Span ingest: the control plane's gRPC server (this process, pinned to CPU 0)
  takes pre-encoded OTLP export requests of 512 spans from a load process on
  CPU 1 (8 concurrent calls); the rate counts spans acknowledged, and an
  acknowledgement means committed.
- Graph API: GET /api/v1/graph/?window=5m over a generated mesh of 1000
  services and 5000 edges (30 ten-second buckets per edge).
- Trace search: typical /api/v1/traces/ queries over a generated store
  (``--spans``, 1 M by default; trace summaries and namespace rows alongside).
- Request to socket: one request through a real sidecar (metrics exported
  every second) until its edge shows up in a delta on a subscribed /ws/live/.

The database is a fresh test database on whatever DATABASE_URL names
(SQLite in a temporary file when unset); Redis is REDIS_URL (``make bench``
starts an embedded one when unset).

    make bench    # or: python -m meshui.launcher.embedded_redis -- python bench/telemetry.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshui.settings")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- span ingest -------------------------------------------------------------------------------------------


def _ingest_load(port: int, requests: int, spans_per_request: int, concurrency: int) -> None:
    """Runs in the load process: encode first, then send as fast as the server acknowledges."""
    import grpc

    from proxyagent.otlp_wire import encode_export_request, encode_resource, encode_scope, encode_span, span_attribute

    resource = encode_resource({"service.name": "bench", "service.namespace": "bench"})
    scope = encode_scope("bench")
    attributes = span_attribute("http.request.method", "GET") + span_attribute("mesh.destination.service", "app.bench")
    now = time.time_ns()
    payloads = []
    for _ in range(requests):
        spans = [
            encode_span(
                trace_id=random.randbytes(16), span_id=random.randbytes(8), parent_span_id=b"", name=b"GET app",
                kind=2, start_ns=now, end_ns=now + 1_000_000, attributes=attributes, error=False,
            )
            for _ in range(spans_per_request)
        ]  # fmt: skip
        payloads.append(encode_export_request(resource, scope, spans))

    async def send_all() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            export: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            )
            queue = list(payloads)

            async def worker() -> None:
                while queue:
                    await export(queue.pop(), timeout=60)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            print(json.dumps({"seconds": time.perf_counter() - started}))

    asyncio.run(send_all())


async def measure_ingest(spans_per_request: int = 512, requests: int = 100) -> dict[str, float]:
    from meshui.meshcontrol.server import MeshControlServer

    server = MeshControlServer("127.0.0.1:0")
    port = await server.start()
    load = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", sys.executable, __file__, "--ingest-load", str(port), str(requests),
        str(spans_per_request), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    before = os.times()
    out, _ = await load.communicate()
    after = os.times()
    await server.stop(grace=1)
    seconds = json.loads(out.decode().strip().splitlines()[-1])["seconds"]
    spans = spans_per_request * requests
    cpu = (after.user - before.user) + (after.system - before.system)
    return {"spans": spans, "seconds": seconds, "rate": spans / seconds, "server_cpu": cpu / seconds}


# --- graph API ---------------------------------------------------------------------------------------------


def generate_mesh(services: int, edges: int, buckets: int, at: dt.datetime) -> None:
    from meshui.telemetry.models import LATENCY_BOUNDS_S, EdgeBucket

    rng = random.Random(7)
    names = [f"svc{i:04d}" for i in range(services)]
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < edges:
        caller, callee = rng.sample(names, 2)
        pairs.add((caller, callee))
    rows = []
    for source, destination in sorted(pairs):
        for b in range(buckets):
            counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
            counts[rng.randrange(3, 8)] = 40
            counts[rng.randrange(8, 12)] = 2
            row = EdgeBucket(
                start=at - dt.timedelta(seconds=10 * (b + 1)), resolution_s=10, reporter="outbound",
                namespace="bench", source_service=source, source_workload=f"{source}-v1",
                destination_service=f"{destination}.bench", destination_workload=f"{destination}-v1",
                status_class="2xx", requests=42, errors=rng.choice((0, 0, 0, 1)), request_bytes=0,
                response_bytes=4200, latency_sum_s=0.5,
            )  # fmt: skip
            row.latency_counts = counts
            rows.append(row)
    EdgeBucket.objects.bulk_create(rows, batch_size=5000)
    _settle(EdgeBucket._meta.db_table)


def _settle(table: str) -> None:
    """Vacuum and analyze a bulk-loaded table, as autovacuum has long done on a store that has been running:
    measurements then neither plan on missing statistics nor compete with an autovacuum of the load."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")


def time_requests(client: Any, path: str, repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:500]
    return timings


# --- trace search ------------------------------------------------------------------------------------------


def generate_traces(spans: int, services: int, at: dt.datetime) -> None:

    from meshui.telemetry.actions import do_store_spans
    from meshui.telemetry.models import Span, TraceSummary
    from meshui.telemetry.span_store import SpanRow, epoch_us

    rng = random.Random(11)
    per_trace = 5
    at_us = epoch_us(at)
    batch: list[SpanRow] = []
    for t in range(spans // per_trace):
        trace_id = f"{rng.getrandbits(128):032x}"
        start = at_us - int(rng.uniform(0, 86400) * 1e6)
        chain = [f"svc{rng.randrange(services):04d}" for _ in range(per_trace)]
        durations = sorted((rng.lognormvariate(3, 1.2) for _ in range(per_trace)), reverse=True)
        error = rng.random() < 0.03
        parent = ""
        for i, (service, ms) in enumerate(zip(chain, durations, strict=True)):
            span_id = f"{rng.getrandbits(64):016x}"
            begin = start + i * 1000
            failed = error and i == per_trace - 1
            batch.append(
                SpanRow(
                    trace_id=trace_id, span_id=span_id, parent_span_id=parent, service=service, namespace="bench",
                    operation=f"GET /{service}/{i % 3}", kind=2 if i % 2 else 3, start_us=begin,
                    end_us=begin + int(ms * 1000), status=2 if failed else 0,
                    attributes=json.dumps({"http.response.status_code": 500 if failed else 200,
                                           "http.request.method": "GET"}),
                    destination_service=f"{chain[i + 1]}.bench" if i + 1 < per_trace else "",
                )
            )  # fmt: skip
            parent = span_id
        if len(batch) >= 20_000:
            # The ingest path itself (COPY on PostgreSQL), summaries included.
            do_store_spans(batch)
            batch = []
            print(f"bench: {(t + 1) * per_trace} spans generated", flush=True)
    do_store_spans(batch)
    for model in (Span, TraceSummary):
        _settle(model._meta.db_table)


SEARCHES = [
    "/api/v1/traces/?limit=20",
    "/api/v1/traces/?service=svc0042&limit=20",
    "/api/v1/traces/?service=svc0042&operation=GET%20/svc0042/1&limit=20",
    "/api/v1/traces/?tags=http.response.status_code=500&limit=20",
    "/api/v1/traces/?min_duration=500ms&limit=20",
    "/api/v1/traces/?errors=true&sort=-duration_us&limit=20",
    "/api/v1/traces/?service=svc0007&min_duration=50ms&max_duration=2s&limit=20",
]


# --- request to socket -------------------------------------------------------------------------------------


async def measure_request_to_socket(rounds: int) -> list[float]:
    import http.client

    import uvicorn
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User
    from django.test import Client
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    from meshui.asgi import application
    from meshui.launcher.sample_app import SampleService, serve
    from meshui.launcher.sample_mesh import free_port
    from meshui.meshcontrol.server import MeshControlServer
    from proxyagent.agent import Agent, AgentConfig
    from proxyagent.protocol.v1 import snapshot_pb2

    control = MeshControlServer("127.0.0.1:0")
    port = await control.start()
    app_port = free_port()
    threading.Thread(target=serve, args=(SampleService("app", [], "127.0.0.1:1", 0, 0), app_port), daemon=True).start()
    callee = Agent(
        AgentConfig(
            service="app",
            namespace="bench",
            app_port=app_port,
            outbound_port=0,
            inbound_port=0,
            admin_port=0,
            admin_http_port=0,
            control_plane="",
            otlp_endpoint=f"127.0.0.1:{port}",
        )
    )
    caller = Agent(AgentConfig(service="client", namespace="bench", app_port=1, outbound_port=0, inbound_port=0,
                               admin_port=0, admin_http_port=0, control_plane="", otlp_endpoint=f"127.0.0.1:{port}"))  # fmt: skip
    await callee.start()
    await caller.start()
    caller.store.apply(
        snapshot_pb2.Snapshot(
            version=1,
            destinations=[
                snapshot_pb2.Destination(
                    service="app", namespace="bench",
                    endpoints=[snapshot_pb2.Endpoint(address="127.0.0.1", port=callee.ports["inbound"], workload="app-v1")],
                )
            ],
        )
    )  # fmt: skip

    web = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                                        ws="websockets-sansio"))  # fmt: skip
    web_task = asyncio.create_task(web.serve())
    while not web.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.02)
    web_port = web.servers[0].sockets[0].getsockname()[1]

    @sync_to_async
    def session() -> str:
        User.objects.create_superuser(username="bench", password="bench-password-long-enough")
        client = Client()
        client.force_login(User.objects.get(username="bench"))
        return str(client.cookies["sessionid"].value)

    cookie = await session()
    timings: list[float] = []
    async with connect(f"ws://127.0.0.1:{web_port}/ws/live/", origin=Origin(f"http://127.0.0.1:{web_port}"),
                       additional_headers={"Cookie": f"sessionid={cookie}"}) as ws:  # fmt: skip
        await ws.send(json.dumps({"type": "subscribe", "topic": "graph", "namespace": "bench", "window": "1m"}))
        assert json.loads(await ws.recv())["type"] == "snapshot"

        def one_request() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", caller.ports["outbound"], timeout=10)
            conn.request("GET", "/", headers={"Host": "app"})
            conn.getresponse().read()
            conn.close()

        for _ in range(rounds):
            await asyncio.sleep(2.5)  # let earlier deltas drain, so the next one is this request's
            while True:
                try:
                    await asyncio.wait_for(ws.recv(), 0.1)
                except TimeoutError:
                    break
            started = time.perf_counter()
            await asyncio.to_thread(one_request)
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "delta" and any(e["destination"] == "app.bench" for e in message["edges"]):
                    timings.append((time.perf_counter() - started) * 1000)
                    break
    await caller.stop()
    await callee.stop()
    web.should_exit = True
    await web_task
    await control.stop(grace=0)
    return timings


# --- report ------------------------------------------------------------------------------------------------


def _report(
    args: argparse.Namespace,
    vendor: str,
    ingest: dict[str, float],
    graph_ms: list[float],
    search_ms: dict[str, list[float]],
    socket_ms: list[float],
) -> list[str]:
    all_search = [t for timings in search_ms.values() for t in timings]
    database = "PostgreSQL" if vendor == "postgresql" else "SQLite"
    return [
        "## Telemetry pipeline",
        "",
        "Written by `bench/telemetry.py`.",
        "",
        f"- Command: `python bench/telemetry.py --spans {args.spans} --rounds {args.rounds}`",
        f"- Machine: {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}; "
        f"database {database}; control plane pinned to CPU 0, load to CPU 1",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "| measurement | figure | goal |",
        "| --- | --- | --- |",
        f"| span ingest, {ingest['spans']:.0f} spans in export requests of 512, 8 at a time | "
        f"{ingest['rate']:.0f} spans/s (control-plane process {ingest['server_cpu']:.2f} cores"
        f"{'' if vendor == 'sqlite' else ', database server not counted'}) | ≥ 20 000 spans/s on one core |",
        f"| graph API, 1000 services / 5000 edges, 5 min window (10 calls) | p50 {statistics.median(graph_ms):.0f} ms, "
        f"max {max(graph_ms):.0f} ms | ≤ 300 ms |",
        f"| trace search over {args.spans} spans ({len(all_search)} calls of {len(search_ms)} kinds) | "
        f"p50 {statistics.median(all_search):.0f} ms, p95 {_percentile(all_search, 0.95):.0f} ms | "
        "p95 ≤ 200 ms on PostgreSQL |",
        f"| request through two sidecars to its delta on /ws/live/ ({len(socket_ms)} requests) | "
        f"p50 {statistics.median(socket_ms):.0f} ms, max {max(socket_ms):.0f} ms | ≤ 2 s |",
        "",
        "Trace search by query (ms, p50 / max of 10):",
        "",
        *(f"- `{path}`: {statistics.median(t):.0f} / {max(t):.0f}" for path, t in search_ms.items()),
        "",
    ]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--ingest-load":
        port, requests, spans = (int(v) for v in sys.argv[2:5])
        _ingest_load(port, requests, spans, concurrency=8)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the generated trace store")
    parser.add_argument("--rounds", type=int, default=10, help="request-to-socket measurements")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="meshui-bench-")
    os.environ.setdefault("MESHUI_DATA_DIR", tmp)
    import django

    django.setup()
    from asgiref.sync import SyncToAsync
    from django.contrib.auth.models import User
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import setup_databases, teardown_databases

    from bench.sections import write_section
    from meshui.telemetry.actions import do_roll_up

    os.sched_setaffinity(0, {0})
    old = setup_databases(verbosity=0, interactive=False)
    try:
        print("bench: span ingest", flush=True)
        ingest = asyncio.run(measure_ingest())
        print(f"bench: {ingest['rate']:.0f} spans/s", flush=True)
        client = Client(HTTP_HOST="localhost")  # the test client's own name is not an allowed host
        client.force_login(User.objects.create_superuser(username="reader", password="x" * 20))
        at = dt.datetime.now(dt.UTC)
        print("bench: generating 1000 services / 5000 edges", flush=True)
        generate_mesh(1000, 5000, 30, at)
        # What Celery beat does every minute: whole minutes of the window then come from 1-minute rollups.
        do_roll_up(at, dt.timedelta(minutes=10), settle=dt.timedelta(seconds=20))
        _settle("telemetry_edgebucket")  # statistics that include the rollups, as autovacuum would keep them
        graph_ms = time_requests(client, "/api/v1/graph/?window=5m", 10)
        print(f"bench: graph p50 {statistics.median(graph_ms):.0f} ms", flush=True)
        print(f"bench: generating {args.spans} spans", flush=True)
        generate_traces(args.spans, 1000, at)
        search_ms = {path: time_requests(client, path, 10) for path in SEARCHES}
        print("bench: request to socket", flush=True)
        socket_ms = asyncio.run(measure_request_to_socket(args.rounds))
        lines = _report(args, connection.vendor, ingest, graph_ms, search_ms, socket_ms)
        write_section(Path(args.out), "telemetry", lines)
        print(f"bench: wrote {args.out}")
    finally:
        # sync_to_async calls ran in asgiref's shared thread; its connection would block dropping the database.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)
        connections.close_all()
        teardown_databases(old, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
