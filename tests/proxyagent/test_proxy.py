"""The data plane over real sockets: app → outbound agent → inbound agent → app."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
from collections import Counter

import pytest

from proxyagent.agent import Agent
from tests.proxyagent.mesh_harness import TwoHops, destination, mesh
from tests.proxyagent.sample_app import running_app

# Every test here runs on both data paths: the native relay and the Python one.
pytestmark = pytest.mark.usefixtures("data_path")


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while piece := sock.recv(65536):
            chunks.append(piece)
        return b"".join(chunks)


def test_a_request_crosses_both_sidecars(two_hops: TwoHops) -> None:
    status, headers, body = two_hops.get("/echo?x=1")
    assert status == 200
    seen = json.loads(body)
    assert seen["name"] == "reviews-app"
    assert seen["path"] == "/echo?x=1"
    assert seen["headers"]["x-mesh-source-workload"] == "web-v1"
    assert seen["headers"]["host"] == "reviews"
    assert seen["headers"]["x-mesh-hops"] == "2"
    assert "via" in headers


def test_headers_the_mesh_writes_are_replaced(two_hops: TwoHops) -> None:
    status, _, body = two_hops.get("/echo", **{"x-mesh-source-workload": "forged", "x-mesh-hops": "0"})
    assert status == 200
    seen = json.loads(body)["headers"]
    assert seen["x-mesh-source-workload"] == "web-v1", "the caller cannot pose as another workload"
    assert seen["x-mesh-hops"] == "2"


def test_headers_the_connection_header_names_are_not_forwarded(two_hops: TwoHops) -> None:
    status, _, body = two_hops.get(
        "/echo", Connection="keep-alive, X-Secret", **{"X-Secret": "for this hop only", "X-Kept": "end to end"}
    )
    assert status == 200
    seen = json.loads(body)["headers"]
    assert "x-secret" not in seen
    assert "connection" not in seen
    assert seen["x-kept"] == "end to end"


def test_the_trace_id_is_kept_across_both_hops(two_hops: TwoHops) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    _, _, body = two_hops.get("/echo", traceparent=f"00-{trace_id}-00f067aa0ba902b7-01")
    forwarded = json.loads(body)["headers"]["traceparent"]
    version, tid, parent, flags = forwarded.split("-")
    assert (version, tid, flags) == ("00", trace_id, "01")
    assert parent != "00f067aa0ba902b7", "each hop is a new span"


def test_a_trace_is_started_when_the_caller_sends_none(two_hops: TwoHops) -> None:
    _, _, body = two_hops.get("/echo")
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", json.loads(body)["headers"]["traceparent"])


def test_connections_are_kept_alive_and_pooled(two_hops: TwoHops) -> None:
    conn = two_hops.client()
    for _ in range(10):
        conn.request("GET", "/echo", headers={"Host": "reviews"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert not response.will_close
    conn.close()
    assert len(two_hops.app.client_ports) == 1, "the inbound sidecar reused one connection to the app"


def test_a_chunked_upload_and_a_chunked_response_stream_through(two_hops: TwoHops) -> None:
    conn = two_hops.client()
    pieces = [os.urandom(1000) for _ in range(5)]
    conn.request("POST", "/echo", body=iter(pieces), headers={"Host": "reviews"}, encode_chunked=True)
    seen = json.loads(conn.getresponse().read())
    assert seen["body_length"] == 5000
    assert seen["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    conn.request("GET", "/chunked", headers={"Host": "reviews"})
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read() == b"alpha-beta-gamma"
    conn.close()


def test_fifty_megabytes_go_up_and_come_back_down(two_hops: TwoHops) -> None:
    size = 50 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    for _ in range(50):
        digest.update(block)
    conn = two_hops.client()
    conn.request(
        "PUT", "/echo", body=(block for _ in range(50)), headers={"Host": "reviews", "Content-Length": str(size)}
    )
    seen = json.loads(conn.getresponse().read())
    assert (seen["body_length"], seen["body_sha256"]) == (size, digest.hexdigest())
    conn.request("GET", f"/big?bytes={size}", headers={"Host": "reviews"})
    response = conn.getresponse()
    received = 0
    while piece := response.read(1024 * 1024):
        received += len(piece)
    assert received == size
    conn.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /echo HTTP/1.1\r\nHost: reviews\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: reviews\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /echo HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: reviews\r\nX Bad: 1\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: reviews\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: reviews\r\nX-Bad: a\rb\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: reviews\r\nX-Bad: a\r\n folded\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=[
        "cl-and-te",
        "two-content-lengths",
        "bad-chunk-size",
        "space-in-name",
        "nul-in-value",
        "cr-in-value",
        "obs-fold",
        "te-not-chunked",
    ],
)
def test_ambiguous_or_malformed_requests_are_refused_and_never_forwarded(two_hops: TwoHops, raw: bytes) -> None:
    response = _raw(two_hops.web.ports["outbound"], raw)
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"x-mesh-error: bad_request" in response
    assert b"connection: close" in response
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["mesh_error"] == "bad_request"
    assert two_hops.app.requests == []


def test_an_unknown_service_is_no_route(two_hops: TwoHops) -> None:
    status, headers, body = two_hops.get("/", host="nowhere")
    assert (status, headers["x-mesh-error"], json.loads(body)["mesh_error"]) == (404, "no_route", "no_route")


def test_a_service_without_instances_is_no_healthy_upstream(two_hops: TwoHops) -> None:
    two_hops.mesh.configure(
        two_hops.web, 2, destination("reviews", two_hops.reviews.ports["inbound"]), destination("empty")
    )
    status, headers, _ = two_hops.get("/", host="empty")
    assert (status, headers["x-mesh-error"]) == (503, "no_healthy_upstream")


def test_a_dead_upstream_is_upstream_connect_failed(two_hops: TwoHops) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    two_hops.mesh.configure(two_hops.web, 2, destination("reviews", dead_port))
    status, headers, _ = two_hops.get("/")
    assert (status, headers["x-mesh-error"]) == (503, "upstream_connect_failed")


def test_a_slow_upstream_is_a_timeout(two_hops: TwoHops) -> None:
    two_hops.mesh.configure(two_hops.web, 2, destination("reviews", two_hops.reviews.ports["inbound"], timeout_ms=300))
    status, headers, body = two_hops.get("/slow?s=2")
    assert (status, headers["x-mesh-error"]) == (504, "timeout")
    assert "0.3 s" in json.loads(body)["detail"]


def test_app_errors_pass_through_without_the_mesh_error_header(two_hops: TwoHops) -> None:
    status, headers, body = two_hops.get("/status?code=503")
    assert status == 503
    assert "x-mesh-error" not in headers
    assert json.loads(body) == {"app": "error"}


def test_absolute_form_requests_work_as_an_http_proxy(two_hops: TwoHops) -> None:
    response = _raw(
        two_hops.web.ports["outbound"],
        b"GET http://reviews.shop/echo?via=proxy HTTP/1.1\r\nHost: reviews.shop\r\nConnection: close\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 200 ")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["path"] == "/echo?via=proxy"


def test_websocket_upgrades_are_tunnelled_both_ways(two_hops: TwoHops) -> None:
    with socket.create_connection(("127.0.0.1", two_hops.web.ports["outbound"]), timeout=10) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: reviews\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        for message in (b"hello", b"mesh"):
            sock.sendall(message)
            echoed = b""
            while len(echoed) < len(message):
                echoed += sock.recv(4096)
            assert echoed == message


def _metric(agent: Agent, name: str, **labels: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", agent.ports["admin_http"], timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_golden_metrics_are_counted_on_both_sides(two_hops: TwoHops) -> None:
    for _ in range(7):
        two_hops.get("/echo")
    two_hops.get("/status?code=500")
    two_hops.get("/", host="nowhere")
    out = {"direction": "outbound", "source_workload": "web-v1", "destination_service": "reviews.shop"}
    assert _metric(two_hops.web, "mesh_requests_total", **out, status_class="2xx") == 7
    assert _metric(two_hops.web, "mesh_requests_total", **out, status_class="5xx") == 1
    assert _metric(two_hops.web, "mesh_request_errors_total", **out) == 1
    assert _metric(two_hops.web, "mesh_errors_total", direction="outbound", code="no_route") == 1
    assert _metric(two_hops.web, "mesh_request_duration_seconds_count", **out) == 8
    inbound = {"direction": "inbound", "source_workload": "web-v1", "destination_workload": "reviews-v1"}
    assert _metric(two_hops.reviews, "mesh_requests_total", **inbound, status_class="2xx") == 7
    assert _metric(two_hops.web, "mesh_requests_in_flight", direction="outbound") == 0


def test_an_app_cannot_speak_for_the_mesh_through_its_own_response_headers(two_hops: TwoHops) -> None:
    # An app answering as if it were the mesh refusing the call: its callers' sidecars must not count a denial.
    forged = "/status?code=403&h=x-mesh-error:denied&h=X-Mesh-Policy:shop/forged&h=x-app:kept"
    status, headers, _ = two_hops.get(forged)
    assert status == 403
    assert "x-mesh-error" not in headers
    assert "x-mesh-policy" not in headers
    assert headers["x-app"] == "kept"
    assert _metric(two_hops.web, "mesh_requests_total", direction="outbound", status_class="4xx") == 1
    assert _metric(two_hops.web, "mesh_requests_denied_total") == 0
    # The mesh's own answers keep theirs.
    _, headers, _ = two_hops.get("/", host="nowhere")
    assert headers["x-mesh-error"] == "no_route"


def test_a_request_the_client_leaves_mid_response_is_still_counted(two_hops: TwoHops) -> None:
    with socket.create_connection(("127.0.0.1", two_hops.web.ports["outbound"]), timeout=10) as sock:
        sock.sendall(b"GET /big?bytes=50000000 HTTP/1.1\r\nHost: reviews\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200 ")
    out = {"direction": "outbound", "destination_service": "reviews.shop", "status_class": "2xx"}
    deadline = time.monotonic() + 10
    while _metric(two_hops.web, "mesh_requests_total", **out) != 1:
        assert time.monotonic() < deadline, "the answered request was not counted"
        time.sleep(0.02)
    assert _metric(two_hops.web, "mesh_requests_in_flight", direction="outbound") == 0


def test_an_empty_body_keeps_its_content_length(two_hops: TwoHops) -> None:
    conn = two_hops.client()
    conn.request("POST", "/echo", body=b"", headers={"Host": "reviews", "Content-Length": "0"})
    reply = json.loads(conn.getresponse().read())
    conn.close()
    assert reply["headers"]["content-length"] == "0", "servers that need a length would answer 411"


def test_proxy_connection_close_closes_like_connection_close(two_hops: TwoHops) -> None:
    response = _raw(
        two_hops.web.ports["outbound"],
        b"GET /echo HTTP/1.1\r\nHost: reviews\r\nProxy-Connection: close\r\n\r\n",
    )  # _raw reads until the agent closes: it must, without a timeout
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in response


def test_readyz_follows_the_config(two_hops: TwoHops) -> None:
    def readyz(agent: Agent) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", agent.ports["admin_http"], timeout=10)
        conn.request("GET", "/readyz")
        status = conn.getresponse().status
        conn.close()
        return status

    assert readyz(two_hops.web) == 200
    assert readyz(two_hops.reviews) == 503, "reviews' sidecar holds no config yet"


def _spread(least_request: bool) -> Counter[str]:
    with running_app("a") as app_a, running_app("b") as app_b, mesh() as built:
        web = built.agent("web", 1)
        built.configure(
            web, 1, destination("reviews", app_a.port, app_b.port, workloads=["a", "b"], least_request=least_request)
        )
        conn = http.client.HTTPConnection("127.0.0.1", web.ports["outbound"], timeout=30)
        seen: Counter[str] = Counter()
        for _ in range(200):
            conn.request("GET", "/echo", headers={"Host": "reviews"})
            seen[json.loads(conn.getresponse().read())["name"]] += 1
        conn.close()
        return seen


def test_round_robin_alternates_exactly() -> None:
    assert _spread(least_request=False) == Counter({"a": 100, "b": 100})


def test_least_request_spreads_sequential_load_across_both() -> None:
    seen = _spread(least_request=True)
    # With one request at a time both have zero in flight, so P2C picks at random: ~binomial(200, 0.5).
    assert 60 <= seen["a"] <= 140, seen
    assert seen["a"] + seen["b"] == 200


def test_http10_clients_get_close_delimited_responses(two_hops: TwoHops) -> None:
    response = _raw(two_hops.web.ports["outbound"], b"GET /chunked HTTP/1.0\r\nHost: reviews\r\n\r\n")
    assert response.startswith(b"HTTP/1.0 200 ")
    assert b"transfer-encoding" not in response.lower()
    assert response.endswith(b"alpha-beta-gamma")


def test_connection_cannot_strip_the_framing_of_a_request(two_hops: TwoHops) -> None:
    response = _raw(
        two_hops.web.ports["outbound"],
        b"POST /echo HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\nConnection: content-length, close\r\n\r\nhello",
    )
    assert response.startswith(b"HTTP/1.1 200 ")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["body_length"] == 5
    status, _, body = two_hops.get("/echo")
    assert status == 200, "the pooled connection was not desynchronised"
    assert json.loads(body)["method"] == "GET"
    assert [method for method, _, _ in two_hops.app.requests] == ["POST", "GET"]


def test_a_timeout_after_the_body_was_sent_answers_at_once(two_hops: TwoHops) -> None:
    two_hops.mesh.configure(two_hops.web, 2, destination("reviews", two_hops.reviews.ports["inbound"], timeout_ms=300))
    conn = two_hops.client()
    conn.request("POST", "/slow?s=2", body=b"x" * 1000, headers={"Host": "reviews"})
    response = conn.getresponse()
    assert (response.status, response.getheader("x-mesh-error")) == (504, "timeout")
    response.read()
    conn.close()


def test_a_slow_request_after_quick_ones_on_one_connection_still_times_out(two_hops: TwoHops) -> None:
    # The connection's one timer was armed by the first request; later deadlines must still be kept.
    two_hops.mesh.configure(two_hops.web, 2, destination("reviews", two_hops.reviews.ports["inbound"], timeout_ms=300))
    conn = two_hops.client()
    try:
        for _ in range(3):
            conn.request("GET", "/echo", headers={"Host": "reviews"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.request("GET", "/slow?s=3", headers={"Host": "reviews"})
        response = conn.getresponse()
        response.read()
        assert (response.status, response.getheader("x-mesh-error")) == (504, "timeout")
    finally:
        conn.close()


def test_idle_keep_alive_connections_are_closed() -> None:
    with running_app("reviews-app") as app, mesh() as built:
        reviews = built.agent("reviews", app.port, idle_timeout_s=0.3)
        with socket.create_connection(("127.0.0.1", reviews.ports["inbound"]), timeout=10) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: reviews\r\n\r\n")
            received = b""
            while b"}" not in received:
                received += sock.recv(65536)
            assert received.startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            assert sock.recv(65536) == b"", "the agent closed the idle connection"
            assert time.monotonic() - started < 5


def _stop_during(path: str, drain_timeout_s: float) -> dict[str, object]:
    """Stop an agent while a GET of ``path`` through it is at the app; what the client got."""
    result: dict[str, object] = {}
    with running_app("reviews-app") as app, mesh() as built:
        reviews = built.agent("reviews", app.port, drain_timeout_s=drain_timeout_s)

        def call() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", reviews.ports["inbound"], timeout=30)
            try:
                conn.request("GET", path, headers={"Host": "reviews"})
                response = conn.getresponse()
                result["status"] = response.status
                result["body"] = response.read()
            except (OSError, http.client.HTTPException) as exc:
                result["error"] = exc
            finally:
                conn.close()

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 10
        while not any(seen == path for _, seen, _ in app.requests):
            assert time.monotonic() < deadline, f"the app never got {path}"
            time.sleep(0.01)
        built.loop.run(reviews.stop())
        thread.join(10)
    return result


def test_stopping_lets_an_in_flight_request_finish() -> None:
    result = _stop_during("/slow?s=0.5", drain_timeout_s=10.0)
    assert result.get("status") == 200, result


def test_stopping_cuts_requests_still_running_at_the_drain_deadline() -> None:
    result = _stop_during("/slow?s=5", drain_timeout_s=0.2)
    assert "status" not in result, "the request was cut, not answered"
    assert "error" in result, "the connection was closed"


def test_a_connection_accepted_as_the_agent_stops_is_closed_not_left_open(data_path: str) -> None:
    """asyncio makes an accepted connection's protocol in a task of its own, which can run after stop() closed
    every connection it knew: that late connection is closed at once, not left open past the agent."""
    with running_app("reviews-app") as app, mesh() as built:
        reviews = built.agent("reviews", app.port)
        client, server_side = socket.socketpair()
        with client:

            async def stop_then_hand_over() -> None:
                await reviews.stop()
                # As asyncio's accept task would, with the inbound listener's protocol factory.
                await asyncio.get_running_loop().connect_accepted_socket(reviews._inbound_connection, server_side)

            built.loop.run(stop_then_hand_over())
            client.settimeout(10)
            assert client.recv(1) == b"", "the agent closed the late connection"
