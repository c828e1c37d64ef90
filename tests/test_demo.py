"""`make demo` end to end: the launcher on a fresh data dir with neither DATABASE_URL nor REDIS_URL set.

Starts the real processes (embedded Redis, uvicorn, Celery worker and beat,
the mesh control gRPC server, seven sidecars, six sample apps and the load
generator), checks that traffic flows through every sidecar and that the
agents show up in the API, logs in like a browser, makes a token, creates a
namespace and a service with it, then stops everything with SIGINT as Ctrl-C
would.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshui.launcher.sample_mesh import free_port
from tests.waiting import until

REPO = Path(__file__).resolve().parent.parent
START_DEADLINE_SECONDS = 120.0
PASSWORD = "demo-password-for-the-test"
# Between polls of the demo's API and sidecars: each poll is several HTTP requests.
POLL_S = 0.5

pytestmark = pytest.mark.slow


class Demo:
    def __init__(self, process: subprocess.Popen[str], base: str, data_dir: Path) -> None:
        self.process = process
        self.base = base
        self.data_dir = data_dir
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def close(self) -> None:
        if self.process.poll() is None:
            # SIGINT first: the launcher stops its children (each in its own session) before it exits.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._pump_thread.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} within {timeout} s; output:\n{''.join(self.output)[-5000:]}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL"} and not k.startswith(("MESHUI_", "DJANGO_"))
    }
    env.update({"MESHUI_DATA_DIR": str(tmp_path / "data"), "MESHUI_ADMIN_PASSWORD": PASSWORD})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshui.launcher",
            "demo",
            "--port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--rate",
            "20",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Demo(process, f"http://127.0.0.1:{port}", tmp_path / "data")
    try:
        yield running
    finally:
        running.close()


class Browser:
    """Just enough of a browser: cookies, CSRF, form login."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name and c.value is not None)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=all_headers)
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def login(self, username: str, password: str) -> int:
        self.opener.open(self.base + "/api/auth/login/", timeout=30).read()
        form = urllib.parse.urlencode(
            {
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.cookie("csrftoken"),
                "next": "/api/v1/me/",
            }
        ).encode()
        req = urllib.request.Request(
            self.base + "/api/auth/login/",
            data=form,
            method="POST",
            headers={"Referer": self.base + "/api/auth/login/"},
        )
        with self.opener.open(req, timeout=30) as response:
            return int(response.status)


def test_the_demo_serves_the_api_and_stops_cleanly(demo: Demo) -> None:
    line = demo.wait_for_line("meshui is running at", START_DEADLINE_SECONDS)
    assert demo.base in line

    browser = Browser(demo.base)
    assert browser.request("GET", "/healthz")[0] == 200
    assert browser.request("GET", "/readyz") == (200, '{"status": "ok", "checks": {"database": "ok", "redis": "ok"}}')

    assert browser.login("admin", PASSWORD) == 200
    status, docs = browser.request("GET", "/api/docs/", headers={"Accept": "text/html"})
    assert status == 200
    assert "swagger-ui" in docs

    status, body = browser.request(
        "POST", "/api/v1/tokens/", {"name": "demo"}, {"X-CSRFToken": browser.cookie("csrftoken")}
    )
    assert status == 201, body
    token = json.loads(body)["token"]

    api = Browser(demo.base)
    bearer = {"Authorization": f"Bearer {token}"}
    status, body = api.request("POST", "/api/v1/namespaces/", {"name": "payments"}, bearer)
    assert status == 201, body
    status, body = api.request("POST", "/api/v1/services/", {"namespace": "payments", "name": "cart"}, bearer)
    assert status == 201, body
    status, body = api.request("GET", "/api/v1/services/?namespace=payments", headers=bearer)
    assert [row["name"] for row in json.loads(body)["results"]] == ["cart"]

    _assert_traffic_flows_through_every_sidecar(demo, api, bearer)
    _assert_the_outsider_is_denied_and_reported(demo, api, bearer)
    _assert_traces_span_every_hop(api, bearer)
    _assert_the_graph_shows_the_sample_mesh(api, bearer)

    assert demo.process.poll() is None, "every process is still up"
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=60) == 0
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # the web server is gone
        urllib.request.urlopen(demo.base + "/healthz", timeout=2)


def _metric(admin_http_port: int, name: str, **labels: str) -> float:
    """The sum of one sidecar's ``name`` series that carry ``labels``, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _requests_seen(admin_http_port: int) -> dict[str, float]:
    """Completed requests by direction, from one sidecar's /metrics; every one between sidecars is mutual TLS."""
    return {
        direction: _metric(admin_http_port, "mesh_requests_total", direction=direction, mtls="true")
        for direction in ("inbound", "outbound")
    }


def _assert_traffic_flows_through_every_sidecar(demo: Demo, api: Browser, bearer: dict[str, str]) -> None:
    manifest = json.loads((demo.data_dir / "demo-mesh.json").read_text())
    agents = {f"{a['service']}-{a['version']}": a for a in manifest["agents"]}
    assert set(agents) == {
        "web-v1",
        "catalog-v1",
        "inventory-v1",
        "reviews-v1",
        "reviews-v2",
        "ratings-v1",
        "loadgen-v1",
        "batch-v1",
    }
    callers = {"web-v1", "catalog-v1", "reviews-v1", "reviews-v2", "loadgen-v1"}
    deadline = time.monotonic() + 60
    while True:
        seen = {name: _requests_seen(agent["admin_http"]) for name, agent in agents.items()}
        missing = [n for n in agents if n not in {"loadgen-v1", "batch-v1"} and not seen[n]["inbound"]]
        missing += [n for n in callers if not seen[n]["outbound"]]
        if not missing:
            break
        assert time.monotonic() < deadline, f"no traffic through {missing}: {seen}"
        time.sleep(0.5)  # polling interval, bounded by the deadline
    status, body = api.request("GET", "/api/v1/agents/?namespace=shop&status=connected", headers=bearer)
    assert status == 200, body
    assert json.loads(body)["count"] == 7


def _assert_the_outsider_is_denied_and_reported(demo: Demo, api: Browser, bearer: dict[str, str]) -> None:
    """The batch job of namespace jobs calls reviews, which shop's reviewed policy refuses: its sidecar sees
    403s, reviews' sidecars count the denials, and the service page's API names the caller."""
    manifest = json.loads((demo.data_dir / "demo-mesh.json").read_text())
    agents = {f"{a['service']}-{a['version']}": a["admin_http"] for a in manifest["agents"]}

    def refused_and_denied() -> bool:
        refused = _metric(agents["batch-v1"], "mesh_requests_total", direction="outbound", status_class="4xx")
        denied = sum(
            _metric(agents[name], "mesh_requests_denied_total", source_workload="batch-v1")
            for name in ("reviews-v1", "reviews-v2")
        )
        return bool(refused and denied)

    until(refused_and_denied, "batch's calls refused by batch's sidecar and denied by reviews'", 60, POLL_S)
    assert _metric(agents["batch-v1"], "mesh_requests_total", direction="outbound", status_class="2xx") == 0
    status, body = api.request("GET", "/api/v1/services/?namespace=shop", headers=bearer)
    assert status == 200, body
    reviews = next(row for row in json.loads(body)["results"] if row["name"] == "reviews")

    def denied_callers() -> set[str]:
        status, body = api.request("GET", f"/api/v1/services/{reviews['id']}/metrics/?window=5m", headers=bearer)
        assert status == 200, body
        return {row["source_workload"] for row in json.loads(body)["denied_callers"]}

    until(lambda: "batch-v1" in denied_callers(), "batch-v1 among reviews' denied callers", 60, POLL_S)
    # The trace says why: reviews' server span names the policy that refused the batch job, and who it was.

    def traces_through_both() -> list[dict[str, Any]]:
        status, body = api.request("GET", "/api/v1/traces/?service=batch&limit=5", headers=bearer)
        assert status == 200, body
        # Each sidecar exports on its own schedule: a trace may hold the batch job's span before reviews'.
        return [t for t in json.loads(body)["results"] if {"batch", "reviews"} <= set(t["services"])]

    both = until(traces_through_both, "a trace of batch → reviews", 60, POLL_S)
    status, body = api.request("GET", f"/api/v1/traces/{both[0]['trace_id']}/", headers=bearer)
    assert status == 200, body
    server = next(s for s in json.loads(body)["spans"] if s["service"] == "reviews" and s["kind"] == "server")
    assert server["attributes"]["mesh.error"] == "denied"
    assert server["attributes"]["mesh.authz.policy"] == "shop/default"
    assert server["attributes"]["mesh.peer.principal"] == "spiffe://cluster.local/ns/jobs/sa/batch"


def _assert_traces_span_every_hop(api: Browser, bearer: dict[str, str]) -> None:
    """The sidecars' spans reach the control plane and join into one trace per request from the load generator."""
    expected = ["catalog:client", "catalog:server", "web:client", "web:server", "loadgen:client"]
    deadline = time.monotonic() + 60
    chains: list[list[str]] = []
    while True:
        status, body = api.request("GET", "/api/v1/traces/?service=inventory&limit=20", headers=bearer)
        assert status == 200, body
        hops = {"loadgen", "web", "catalog", "inventory"}
        # Each sidecar exports on its own schedule, so a trace fills in over a second or two.
        for trace in [t for t in json.loads(body)["results"] if hops <= set(t["services"])]:
            status, body = api.request("GET", f"/api/v1/traces/{trace['trace_id']}/", headers=bearer)
            assert status == 200, body
            detail = json.loads(body)
            chain = _chain_up_from_inventory(detail["spans"])
            if chain == expected:
                assert detail["critical_path"], "the server computes the trace's critical path"
                return
            chains.append(chain)
        assert time.monotonic() < deadline, f"no trace crosses loadgen → web → catalog → inventory: {chains[-5:]}"
        time.sleep(0.5)  # polling interval, bounded by the deadline


def _chain_up_from_inventory(spans: list[dict[str, Any]]) -> list[str]:
    """From inventory's server span up through the parents: catalog's client span, catalog's server span, ..."""
    by_id = {span["span_id"]: span for span in spans}
    span = next((s for s in spans if s["service"] == "inventory" and s["kind"] == "server"), None)
    chain: list[str] = []
    while span is not None and span["parent_span_id"] in by_id:
        span = by_id[span["parent_span_id"]]
        chain.append(f"{span['service']}:{span['kind']}")
    return chain


def _assert_the_graph_shows_the_sample_mesh(api: Browser, bearer: dict[str, str]) -> None:
    """The agents' OTLP metrics make the service graph of the sample application."""
    expected = {
        ("loadgen.shop", "web.shop"),
        ("web.shop", "catalog.shop"),
        ("web.shop", "reviews.shop"),
        ("catalog.shop", "inventory.shop"),
        ("reviews.shop", "ratings.shop"),
    }
    deadline = time.monotonic() + 60
    while True:
        status, body = api.request("GET", "/api/v1/graph/?namespace=shop&window=1m", headers=bearer)
        assert status == 200, body
        edges = {(e["source"], e["destination"]): e for e in json.loads(body)["edges"]}
        # The batch job's calls into shop are drawn as a denied edge (red on the dashboard).
        denied = {src for (src, dst), e in edges.items() if dst == "reviews.shop" and e["denied_rps"] > 0}
        if expected <= set(edges) and denied:
            break
        assert time.monotonic() < deadline, f"the graph lacks {expected - set(edges)} or a denied edge: {edges}"
        time.sleep(0.5)  # polling interval, bounded by the deadline
    web_to_reviews = edges[("web.shop", "reviews.shop")]
    assert web_to_reviews["rps"] > 0
    assert web_to_reviews["p50_ms"] is not None
