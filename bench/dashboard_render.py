"""The dashboard's render times in headless Chromium: the topology graph of meshes of growing size, and
the waterfall of a 10 000-span trace, in one run.

The built dashboard (``frontend/dist``) is served by a small HTTP server in this
process that answers the few API calls those pages make with generated data
(``/api/v1/graph/`` with N services and 3N edges; ``/api/v1/traces/{id}/`` with
a trace of 10 000 spans), so the figures are the browser's work alone. Debian's
Chromium is driven by Playwright, headless, one fresh context per load.

Graph: three figures per size, each the median (and max) of ``--repeat`` loads,
all ending at the graph's first painted frame (``data-render-ms`` and
``data-rendered-at`` on the canvas are set two animation frames after the layout):

- canvas: from the graph component's mount (Cytoscape's build, layout, paint);
- from data: from the moment the graph's API response had arrived (its JSON
  parsed, the page rendered with it, and the canvas);
- page: from the start of navigation (HTML, scripts, the API call and all the
  above).

Waterfall: from the trace's API response to its rows' first painted frame, then
from a click on the root's collapse button to the frame showing one row, and
from the click that expands it again to the frame showing all rows again (the
waterfall stamps ``data-painted-at`` and ``data-painted-rows`` two frames after
its rows change).

    make bench            # or: python bench/dashboard_render.py --repeat 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mimetypes
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import cpu_model, cpu_ticks, stolen_share  # noqa: E402
from bench.sections import write_section  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page

DIST = REPO / "frontend" / "dist"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
GOAL_MS = 1500.0
HEALTH = ["healthy"] * 6 + ["degraded", "failing", "idle"]


def generated_mesh(services: int, edges: int, seed: int = 7) -> dict[str, Any]:
    """A mesh shaped like a real one: calls flow from lower-numbered tiers to higher ones, some nodes are hubs."""
    rng = random.Random(seed)
    namespaces = [f"ns{i}" for i in range(max(1, services // 100))]
    ids = [f"svc{i:04d}.{namespaces[i % len(namespaces)]}" for i in range(services)]

    def stats() -> dict[str, Any]:
        rps = round(rng.expovariate(1 / 20), 3)
        return {
            "requests": int(rps * 300),
            "rps": rps,
            "error_rate": round(rng.choice([0, 0, 0, 0.002, 0.05, 0.2]), 4),
            "p50_ms": round(rng.uniform(1, 30), 3),
            "p95_ms": round(rng.uniform(30, 200), 3),
            "p99_ms": round(rng.uniform(200, 900), 3),
            "bytes": rng.randrange(10**6),
            "mtls_share": rng.choice([0.0, 1.0]),
            "denied_rps": rng.choice([0.0] * 9 + [0.5]),
            "health": rng.choice(HEALTH),
        }

    pairs: set[tuple[int, int]] = set()
    while len(pairs) < edges:
        source = rng.randrange(services - 1)
        # Most calls go a little way down the tiers; a few go to shared hubs at the bottom.
        target = (
            rng.randrange(services - 20, services)
            if rng.random() < 0.1
            else min(services - 1, source + rng.randrange(1, 40))
        )
        if source != target:
            pairs.add((source, target))
    nodes = [
        {"id": node, "name": node.rpartition(".")[0], "namespace": node.rpartition(".")[2], **stats()} for node in ids
    ]
    return {
        "window": {"start": "2026-12-03T10:00:00Z", "end": "2026-12-03T10:05:00Z", "seconds": 300, "resolution_s": 10},
        "health_thresholds": {"degraded": 0.001, "failing": 0.1},
        "nodes": nodes,
        "edges": [{"source": ids[s], "destination": ids[t], **stats()} for s, t in sorted(pairs)],
    }  # fmt: skip


def generated_trace(spans: int, seed: int = 11) -> dict[str, Any]:
    """A trace of ``spans`` spans in a tree a few levels deep (fan-out up to 12), as ``/api/v1/traces/{id}/`` has it."""
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
    rows: list[dict[str, Any]] = []
    children: dict[str, list[str]] = {}
    frontier = [("", 0, 0, 5_000_000)]  # (parent, depth, start µs, end µs)
    while len(rows) < spans and frontier:
        parent, depth, start, end = frontier.pop(0)
        # One root span; below it each span calls 2 to 12 others.
        for _ in range(1 if not parent else min(rng.randint(2, 12), spans - len(rows))):
            span_id = f"{len(rows) + 1:016x}"
            begin = rng.randint(start, max(start, end - 1000))
            finish = rng.randint(begin + 100, max(begin + 101, end))
            service = f"svc{rng.randrange(40):02d}"
            rows.append({
                "span_id": span_id, "parent_span_id": parent, "service": service, "namespace": "shop",
                "operation": f"GET /api/{rng.randrange(200)}", "kind": "server" if depth % 2 else "client",
                "start": (t0 + dt.timedelta(microseconds=begin)).isoformat().replace("+00:00", "Z"),
                "end": (t0 + dt.timedelta(microseconds=finish)).isoformat().replace("+00:00", "Z"),
                "duration_us": finish - begin, "status": "error" if rng.random() < 0.02 else "unset",
                "status_message": "", "attributes": {"http.response.status_code": 200}, "events": [],
                "resource": {}, "source_workload": "", "destination_service": "", "destination_workload": "",
                "children": [], "depth": depth,
            })  # fmt: skip
            children.setdefault(parent, []).append(span_id)
            frontier.append((span_id, depth + 1, begin, finish))
    for row in rows:
        row["children"] = children.get(row["span_id"], [])
    root = rows[0]
    return {
        "trace": {
            "trace_id": "ab" * 16, "root_service": root["service"], "root_operation": root["operation"],
            "start": t0.isoformat().replace("+00:00", "Z"),
            "end": (t0 + dt.timedelta(seconds=5)).isoformat().replace("+00:00", "Z"),
            "duration_us": 5_000_000, "span_count": len(rows), "error": True,
            "services": sorted({row["service"] for row in rows}),
        },
        "spans": rows,
        "roots": children[""],
        "critical_path": [{"span_id": root["span_id"], "start_us": 0, "end_us": root["duration_us"]}],
    }  # fmt: skip


class _Dashboard(BaseHTTPRequestHandler):
    """The built app and the API calls its graph page makes (no database, no login: only the browser is measured)."""

    graph_body = b"{}"
    trace_body = b"{}"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/v1/graph/":
            self._send(200, "application/json", self.graph_body)
        elif path.startswith("/api/v1/traces/"):
            self._send(200, "application/json", self.trace_body)
        elif path == "/api/v1/me/":
            me = {"username": "bench", "is_superuser": False, "capabilities_everywhere": ["view"], "namespaces": []}
            self._send(200, "application/json", json.dumps(me).encode())
        elif path == "/api/v1/namespaces/":
            self._send(200, "application/json", b'{"count": 0, "next": null, "previous": null, "results": []}')
        elif path.startswith("/static/dashboard/"):
            file = (DIST / path.removeprefix("/static/dashboard/")).resolve()
            if DIST.resolve() in file.parents and file.is_file():
                self._send(200, mimetypes.guess_type(file.name)[0] or "application/octet-stream", file.read_bytes())
            else:
                self._send(404, "text/plain", b"not found")
        else:
            self._send(200, "text/html; charset=utf-8", (DIST / "index.html").read_bytes())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_GRAPH_RESPONSE_END = """
() => performance.getEntriesByType("resource").find((entry) => entry.name.includes("/api/v1/graph/")).responseEnd
"""


def fresh_pages(repeat: int) -> Iterator[Page]:
    """``repeat`` pages, each in a fresh browser context: nothing cached, no positions remembered from the last."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                try:
                    yield context.new_page()
                finally:
                    context.close()
        finally:
            browser.close()


def measure(base: str, repeat: int) -> tuple[list[float], list[float], list[float]]:
    graph_ms: list[float] = []
    data_ms: list[float] = []
    page_ms: list[float] = []
    for page in fresh_pages(repeat):
        page.goto(f"{base}/graph?window=5m")
        canvas = page.locator("[data-testid=graph-canvas][data-render-ms]")
        canvas.wait_for(timeout=60_000)
        # Written in the frame that ends the measurement (page time): not when this poll noticed it.
        now = float(canvas.get_attribute("data-rendered-at") or "nan")
        graph_ms.append(float(canvas.get_attribute("data-render-ms") or "nan"))
        data_ms.append(now - float(page.evaluate(_GRAPH_RESPONSE_END)))
        page_ms.append(now)
    return graph_ms, data_ms, page_ms


_TRACE_RESPONSE_END = """
() => performance.getEntriesByType("resource").find((entry) => entry.name.includes("/api/v1/traces/")).responseEnd
"""
# Clicks a button and returns the page time just before it, so the wait is timed in the page's own clock.
_CLICK = """
(label) => {
  const button = document.querySelector(`[data-testid=waterfall] button[aria-label="${label}"]`);
  const before = performance.now();
  button.click();
  return before;
}
"""


def measure_waterfall(base: str, repeat: int, spans: int) -> tuple[list[float], list[float], list[float]]:
    first: list[float] = []
    collapse: list[float] = []
    expand: list[float] = []
    for page in fresh_pages(repeat):
        page.goto(f"{base}/traces/{'ab' * 16}")
        waterfall = page.locator(f"[data-testid=waterfall][data-painted-rows='{spans}']")
        waterfall.wait_for(timeout=60_000)
        first.append(float(waterfall.get_attribute("data-painted-at") or "nan") - page.evaluate(_TRACE_RESPONSE_END))
        root = page.locator("[data-testid=waterfall] [role=treeitem]").first
        label = root.locator("button.twisty").get_attribute("aria-label") or ""
        for rows, times, name in (
            (1, collapse, label),
            (spans, expand, label.replace("Collapse", "Expand", 1)),
        ):
            clicked = float(page.evaluate(_CLICK, name))
            painted = page.locator(f"[data-testid=waterfall][data-painted-rows='{rows}']")
            painted.wait_for(timeout=60_000)
            times.append(float(painted.get_attribute("data-painted-at") or "nan") - clicked)
    return first, collapse, expand


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="page loads per size")
    parser.add_argument("--sizes", default="100,1000", help="services per mesh (edges: 3 per service)")
    parser.add_argument("--spans", type=int, default=10_000, help="spans in the trace of the waterfall")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    if not (DIST / "index.html").exists():
        print("bench: frontend/dist is missing (make frontend builds it)", file=sys.stderr)
        return 2
    if not CHROMIUM.exists():
        print("bench: /usr/bin/chromium is missing (make browser installs it)", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rows = []
    ticks_before = cpu_ticks()
    try:
        for size in (int(value) for value in args.sizes.split(",")):
            mesh = generated_mesh(size, size * 3)
            _Dashboard.graph_body = json.dumps(mesh).encode()
            print(f"bench: graph of {size} services / {size * 3} edges", flush=True)
            graph_ms, data_ms, page_ms = measure(base, args.repeat)
            rows.append((size, len(mesh["edges"]), len(_Dashboard.graph_body), graph_ms, data_ms, page_ms))
        # The waterfall's only root is the trace's first span; its children are the rest of the tree.
        trace = generated_trace(args.spans)
        _Dashboard.trace_body = json.dumps(trace).encode()
        print(f"bench: waterfall of {args.spans} spans", flush=True)
        waterfall = measure_waterfall(base, args.repeat, len(trace["spans"]))
    finally:
        server.shutdown()
    stolen = stolen_share(ticks_before, cpu_ticks())
    lines = report(args, rows, len(trace["spans"]), len(_Dashboard.trace_body), waterfall, stolen)
    write_section(Path(args.out), "dashboard-render", lines)
    print("\n".join(lines))
    return 0


Row = tuple[int, int, int, list[float], list[float], list[float]]


def report(
    args: argparse.Namespace,
    rows: list[Row],
    spans: int,
    trace_bytes: int,
    waterfall: tuple[list[float], list[float], list[float]],
    stolen: float,
) -> list[str]:
    version = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=False).stdout
    chromium = version.strip() or "Chromium"
    lines = [
        "## Dashboard render",
        "",
        "Written by `bench/dashboard_render.py`.",
        "",
        f"- Command: `python bench/dashboard_render.py --repeat {args.repeat} --sizes {args.sizes} --spans {args.spans}`",
        f"- Machine: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}; {chromium}, headless, driven by "
        f"Playwright; CPU time stolen by the hypervisor during the run: {stolen:.1%}",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "- Graph: the built dashboard's graph page loading a generated mesh from a stub API, up to the graph's "
        "first painted frame, timed from: the graph component's mount (canvas: Cytoscape's build, layout and "
        "paint); the arrival of the graph's API response (from data: parsing it, rendering the page with it, "
        "and the canvas); the start of navigation (page: everything). Median (max) of the loads, each in a "
        "fresh browser context.",
        "",
        "| mesh | response | canvas ms | from data ms | page ms |",
        "| --- | --- | --- | --- | --- |",
    ]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} ({max(values):.0f})"

    for size, edges, body, graph_ms, data_ms, page_ms in rows:
        lines.append(
            f"| {size} services / {edges} edges | {body / 1024:.0f} KiB | {cell(graph_ms)} | {cell(data_ms)} "
            f"| {cell(page_ms)} |"
        )
    big = [row for row in rows if row[0] >= 1000]
    if big:
        from_data = statistics.median(big[-1][4])
        page = statistics.median(big[-1][5])
        verdict = "met" if from_data <= GOAL_MS else "not met"
        lines += [
            "",
            f"Goal: a 1000-node / 3000-edge graph renders in ≤ {GOAL_MS / 1000:.1f} s (from its data to the first "
            f"painted frame): {from_data / 1000:.2f} s, {verdict}; the whole page load took {page / 1000:.2f} s.",
        ]
    first, collapse, expand = waterfall
    lines += [
        "",
        f"- Waterfall: the trace page with a generated trace of {spans} spans ({trace_bytes / 1024:.0f} KiB), rows "
        "virtualised; from its API response to the rows' first painted frame, and from a click on the root's "
        "collapse button to the frame showing the one row left, and from the click that expands it to the frame showing them all again.",
        "",
        "| trace | first paint ms | collapse ms | expand ms |",
        "| --- | --- | --- | --- |",
        f"| {spans} spans | {cell(first)} | {cell(collapse)} | {cell(expand)} |",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
