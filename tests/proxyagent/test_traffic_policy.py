"""Traffic policy enforced by the caller's agent, against upstreams that fail on purpose (real sockets)."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from proxyagent.agent import Agent
from proxyagent.protocol.v1 import snapshot_pb2
from tests.proxyagent.mesh_harness import Mesh, TwoHops, mesh, request, scrape
from tests.proxyagent.misbehaving_upstream import MisbehavingUpstream, upstreams, wait_until

# Every test here runs on both data paths: policy destinations must leave the native relay for the Python path.
pytestmark = pytest.mark.usefixtures("data_path")

P = snapshot_pb2


def _destination(
    *ups: MisbehavingUpstream,
    policy: snapshot_pb2.TrafficPolicy | None = None,
    load_balancer: snapshot_pb2.LoadBalancer.ValueType = P.LOAD_BALANCER_ROUND_ROBIN,
    timeout_ms: int = 0,
    hash_header: str = "",
    service: str = "reviews",
) -> snapshot_pb2.Destination:
    destination = P.Destination(
        service=service,
        namespace="shop",
        load_balancer=load_balancer,
        endpoints=[
            P.Endpoint(address="127.0.0.1", port=up.port, workload=up.name, labels={"version": up.version})
            for up in ups
        ],
        request_timeout_ms=timeout_ms,
        hash_header=hash_header,
    )
    if policy is not None:
        destination.traffic_policy.CopyFrom(policy)
    return destination


def _get(agent: Agent, path: str = "/", **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    return request(agent.ports["outbound"], path, **kwargs)


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there is none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _mesh_error(headers: dict[str, str], body: bytes) -> str:
    assert headers.get("x-mesh-error") == json.loads(body)["mesh_error"]
    return headers["x-mesh-error"]


@pytest.fixture
def built() -> Iterator[Mesh]:
    with mesh() as m:
        yield m


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


# Circuit breaker


def test_the_breaker_answers_circuit_open_at_once_when_max_requests_are_in_flight(
    built: Mesh, pool: ThreadPoolExecutor
) -> None:
    timeout_ms = 10_000
    with upstreams(("reviews-a", "v1")) as [up]:
        up.behave("hang")
        web = built.agent("web", 1)
        policy = P.TrafficPolicy(name="shop/reviews", circuit_breaker=P.CircuitBreaker(max_requests=1))
        built.configure(web, 1, _destination(up, policy=policy, timeout_ms=timeout_ms))
        first: Future[tuple[int, dict[str, str], bytes]] = pool.submit(_get, web, "/first")
        wait_until(lambda: up.count == 1, what="the first request to reach the hanging upstream")
        started = time.monotonic()
        status, headers, body = _get(web, "/second")
        elapsed = time.monotonic() - started
        assert status == 503
        assert _mesh_error(headers, body) == "circuit_open"
        assert "max_requests" in json.loads(body)["detail"]
        assert elapsed < timeout_ms / 1000 / 10, f"answered after {elapsed:.2f} s: it waited, not failed fast"
        assert up.count == 1, "the refused request never reached the upstream"
        up.release()
        assert first.result(timeout=10)[0] == 200
        text = scrape(web)
        assert _sample(text, "mesh_circuit_open_total", destination_service="reviews.shop", limit="max_requests") == 1
        assert _sample(text, "mesh_errors_total", code="circuit_open") == 1
        # The breaker's count went back down: the next request is admitted.
        up.behave("ok")
        assert _get(web, "/third")[0] == 200


def test_requests_wait_for_a_connection_up_to_max_pending_then_circuit_open(
    built: Mesh, pool: ThreadPoolExecutor
) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        up.behave("hang")
        web = built.agent("web", 1)
        limits = P.CircuitBreaker(max_connections=1, max_pending_requests=1)
        built.configure(web, 1, _destination(up, policy=P.TrafficPolicy(circuit_breaker=limits), timeout_ms=10_000))
        first = pool.submit(_get, web, "/first")
        wait_until(lambda: up.count == 1, what="the first request to hold the one connection")
        second = pool.submit(_get, web, "/second")
        # The second waits for the connection; the third finds the line full.
        wait_until(lambda: _sample(scrape(web), "mesh_requests_in_flight", destination_service="reviews.shop") == 2)
        status, headers, body = _get(web, "/third")
        assert (status, _mesh_error(headers, body)) == (503, "circuit_open")
        assert "max_pending_requests" in json.loads(body)["detail"]
        up.behave("ok")
        up.release()
        assert first.result(timeout=10)[0] == 200
        assert second.result(timeout=10)[0] == 200, "the waiting request went on once the connection was free"
        assert up.max_open_connections == 1
        assert _sample(scrape(web), "mesh_circuit_open_total", limit="max_pending_requests") == 1


def test_a_connection_idle_to_another_endpoint_makes_room_for_a_waiting_request(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [a, b]:
        web = built.agent("web", 1)
        limits = P.CircuitBreaker(max_connections=1, max_pending_requests=1)
        built.configure(web, 1, _destination(a, b, policy=P.TrafficPolicy(circuit_breaker=limits), timeout_ms=5000))
        # Round robin alternates: each request needs a connection to the endpoint the last one did not use.
        for _ in range(6):
            assert _get(web)[0] == 200
        assert (a.count, b.count) == (3, 3)
        assert a.max_open_connections == b.max_open_connections == 1


def test_limits_hold_under_concurrent_load_and_counts_return_to_zero(built: Mesh, pool: ThreadPoolExecutor) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        limits = P.CircuitBreaker(max_connections=2, max_pending_requests=1000, max_requests=1000)
        built.configure(web, 1, _destination(up, policy=P.TrafficPolicy(circuit_breaker=limits), timeout_ms=10_000))
        statuses = Counter(pool.map(lambda _: _get(web)[0], range(300)))
        assert statuses == {200: 300}
        assert up.max_open_connections <= 2
        assert _sample(scrape(web), "mesh_requests_in_flight", destination_service="reviews.shop") == 0
        # Nothing leaked: a tighter limit still admits requests one at a time.
        tight = P.CircuitBreaker(max_connections=1, max_pending_requests=1000, max_requests=1)
        built.configure(web, 2, _destination(up, policy=P.TrafficPolicy(circuit_breaker=tight)))
        assert all(_get(web)[0] == 200 for _ in range(5))


# Outlier detection


def test_a_failing_endpoint_is_ejected_and_readmitted_once_healthy(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [bad, good]:
        bad.behave(503)
        web = built.agent("web", 1)
        outliers = P.OutlierDetection(consecutive_5xx=3, interval_ms=100, base_ejection_ms=400, max_ejection_percent=50)
        built.configure(web, 1, _destination(bad, good, policy=P.TrafficPolicy(outlier_detection=outliers)))
        statuses = Counter(_get(web)[0] for _ in range(6))
        assert statuses == {503: 3, 200: 3}, "round robin took three failures to eject"
        assert bad.count == 3
        for _ in range(20):
            assert _get(web)[0] == 200
        assert bad.count == 3, "no request went to the ejected endpoint"
        text = scrape(web)
        assert _sample(text, "mesh_ejections_total", destination_service="reviews.shop", reason="consecutive_5xx") == 1
        assert _sample(text, "mesh_ejected_endpoints", destination_service="reviews.shop") == 1
        bad.behave("ok")

        def readmitted() -> bool:
            assert _get(web)[0] == 200
            return bad.count > 3

        wait_until(readmitted, what="the ejected endpoint to be readmitted after its ejection time")
        assert _sample(scrape(web), "mesh_ejected_endpoints", destination_service="reviews.shop") == 0


def test_ejection_stays_within_max_ejection_percent(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [a, b]:
        a.behave(503)
        b.behave(503)
        web = built.agent("web", 1)
        # 50 % of two endpoints: one may be out, never both.
        outliers = P.OutlierDetection(consecutive_5xx=2, base_ejection_ms=60_000, max_ejection_percent=50)
        built.configure(web, 1, _destination(a, b, policy=P.TrafficPolicy(outlier_detection=outliers)))
        for _ in range(12):
            assert _get(web)[0] == 503
        text = scrape(web)
        assert _sample(text, "mesh_ejections_total", destination_service="reviews.shop") == 1
        assert _sample(text, "mesh_ejected_endpoints", destination_service="reviews.shop") == 1
        assert _sample(text, "mesh_ejections_skipped_total", destination_service="reviews.shop") >= 1
        assert min(a.count, b.count) == 2, "one endpoint was ejected after its second failure"


def test_gateway_errors_eject_and_a_success_resets_the_run(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        outliers = P.OutlierDetection(consecutive_gateway_errors=2, base_ejection_ms=60_000, max_ejection_percent=100)
        built.configure(web, 1, _destination(up, policy=P.TrafficPolicy(outlier_detection=outliers)))
        up.script(502, "ok", 504, "ok", 500, 500, 503)
        assert [_get(web)[0] for _ in range(7)] == [502, 200, 504, 200, 500, 500, 503]
        assert _sample(scrape(web), "mesh_ejections_total") == 0, "500 is not a gateway error and 200s reset"
        up.script(503, 502)
        assert [_get(web)[0] for _ in range(2)] == [503, 502]
        assert _sample(scrape(web), "mesh_ejections_total", reason="consecutive_gateway_errors") == 1
        # All endpoints out: the only one is still picked rather than none.
        up.behave("ok")
        assert _get(web)[0] == 200


# Retries and the retry budget


def _retry_policy(**retries: Any) -> snapshot_pb2.TrafficPolicy:
    budget = retries.pop("budget", P.RetryBudget(percent=100, min_per_second=100))
    settings = {"attempts": 3, "on_5xx": True, "max_replay_body_bytes": 65536, **retries}
    return P.TrafficPolicy(name="shop/reviews", retries=P.RetryPolicy(**settings), retry_budget=budget)


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []

    async def Export(  # noqa: N802 - the OTLP service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def _attributes(attributes: Any) -> dict[str, Any]:
    return {kv.key: kv.value.string_value or kv.value.int_value for kv in attributes}


def test_a_failed_try_is_retried_on_the_healthy_endpoint_and_the_span_says_so(built: Mesh) -> None:
    receiver = _Receiver()

    async def serve() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, otlp_port = built.loop.run(serve())
    try:
        with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [bad, good]:
            bad.behave(503)
            web = built.agent("web", 1, otlp_endpoint=f"127.0.0.1:{otlp_port}")
            built.configure(web, 1, _destination(bad, good, policy=_retry_policy(attempts=2)))
            for _ in range(10):
                status, _, body = _get(web)
                assert status == 200
                assert json.loads(body)["instance"] == "reviews-b"
            assert 1 <= bad.count <= 10, "round robin sent some first tries to the failing endpoint"
            assert good.count == 10, "every retry went to the other endpoint, never the failed one again"
            text = scrape(web)
            retried = _sample(text, "mesh_retries_total", destination_service="reviews.shop", outcome="retried")
            assert retried == bad.count
            assert _sample(text, "mesh_retries_total", reason="5xx", outcome="retried") == bad.count
            wait_until(lambda: len(receiver.spans) >= 10, what="the client spans")
            retried_spans = [span for span in receiver.spans if any(e.name == "mesh.retry" for e in span.events)]
            assert len(retried_spans) == bad.count
            span = retried_spans[0]
            assert _attributes(span.attributes)["mesh.tries"] == 2
            assert _attributes(span.attributes)["mesh.traffic_policy"] == "shop/reviews"
            assert _attributes(span.attributes)["mesh.destination.workload"] == "reviews-b"
            event = next(e for e in span.events if e.name == "mesh.retry")
            assert _attributes(event.attributes) == {
                "mesh.retry.attempt": 2,
                "mesh.retry.reason": "5xx",
                "mesh.retry.failed_endpoint": f"127.0.0.1:{bad.port}",
                "mesh.retry.endpoint": f"127.0.0.1:{good.port}",
                "mesh.retry.workload": "reviews-b",
            }
            assert span.start_time_unix_nano <= event.time_unix_nano <= span.end_time_unix_nano
    finally:
        built.loop.run(server.stop(0))


def test_retries_take_every_attempt_the_budget_allows(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [a, b]:
        a.behave(503)
        b.behave(503)
        web = built.agent("web", 1)
        # 100 % of one request in flight: one retry at a time, so each request may use all its attempts.
        policy = _retry_policy(attempts=3, budget=P.RetryBudget(percent=100, min_per_second=0))
        built.configure(web, 1, _destination(a, b, policy=policy))
        requests = 10
        assert all(_get(web)[0] == 503 for _ in range(requests))
        assert a.count + b.count == requests * (1 + 3)
        assert _sample(scrape(web), "mesh_retries_total", outcome="budget_exhausted") == 0


def test_a_budget_of_nothing_allows_no_retry(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        up.behave(503)
        web = built.agent("web", 1)
        policy = _retry_policy(attempts=3, budget=P.RetryBudget(percent=0, min_per_second=0))
        built.configure(web, 1, _destination(up, policy=policy))
        requests = 10
        assert all(_get(web)[0] == 503 for _ in range(requests))
        assert up.count == requests, "not one retry"
        text = scrape(web)
        assert _sample(text, "mesh_retries_total", reason="5xx", outcome="budget_exhausted") == requests
        assert _sample(text, "mesh_retries_total", outcome="retried") == 0


def test_the_budget_floor_bounds_retries_per_second(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [a, b]:
        a.behave(503)
        b.behave(503)
        web = built.agent("web", 1)
        floor = 2
        policy = _retry_policy(attempts=3, budget=P.RetryBudget(percent=1, min_per_second=floor))
        built.configure(web, 1, _destination(a, b, policy=policy))
        requests = 30
        started = time.monotonic()
        assert all(_get(web)[0] == 503 for _ in range(requests))
        elapsed = time.monotonic() - started
        tries = a.count + b.count
        # With one request in flight, 1 % allows no retry: only the floor does, at most `floor` in any second.
        assert tries <= requests + floor * (math.floor(elapsed) + 1)
        assert tries > requests, "the floor allowed some retries"
        assert _sample(scrape(web), "mesh_retries_total", outcome="budget_exhausted") > 0


def test_post_is_retried_only_when_non_idempotent_retries_are_allowed(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        built.configure(web, 1, _destination(up, policy=_retry_policy(attempts=2)))
        up.script(503, then="ok")
        assert _get(web, method="POST", body=b"order")[0] == 503
        assert up.count == 1, "a POST is not replayed"
        up.script(503, then="ok")
        assert _get(web, method="PUT", body=b"order")[0] == 200
        assert up.count == 3, "a PUT is"
        built.configure(web, 2, _destination(up, policy=_retry_policy(attempts=2, non_idempotent=True)))
        up.script(503, then="ok")
        status, _, body = _get(web, method="POST", body=b"order")
        assert status == 200
        assert json.loads(body)["body_sha256"] == hashlib.sha256(b"order").hexdigest(), "the same body went again"
        assert up.count == 5


def test_a_body_larger_than_max_replay_body_bytes_is_not_replayed(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        built.configure(web, 1, _destination(up, policy=_retry_policy(attempts=2, max_replay_body_bytes=1024)))
        small, big = b"s" * 1024, b"b" * 1025
        up.script(503, then="ok")
        status, _, body = _get(web, method="PUT", body=small)
        assert status == 200
        assert json.loads(body)["body_sha256"] == hashlib.sha256(small).hexdigest()
        assert up.count == 2
        up.script(503, then="ok")
        assert _get(web, method="PUT", body=big)[0] == 503
        assert up.count == 3, "the big body was streamed once and not kept"
        # A chunked body, whose length nobody knows in advance, is kept only up to the limit too.
        for body_chunks, expected, tries in (([small[:512], small[512:]], 200, 2), ([small, b"x"], 503, 1)):
            before = up.count
            up.script(503, then="ok")
            conn = http.client.HTTPConnection("127.0.0.1", web.ports["outbound"], timeout=30)
            conn.request("PUT", "/", body=iter(body_chunks), headers={"Host": "reviews"}, encode_chunked=True)
            response = conn.getresponse()
            response.read()
            conn.close()
            assert response.status == expected
            assert up.count - before == tries


def test_a_per_try_timeout_retries_on_another_endpoint(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [slow, fast]:
        slow.behave("hang")
        web = built.agent("web", 1)
        request_timeout_ms, per_try_ms = 10_000, 200
        policy = _retry_policy(attempts=1, per_try_timeout_ms=per_try_ms)
        built.configure(web, 1, _destination(slow, fast, policy=policy, timeout_ms=request_timeout_ms))
        for _ in range(4):
            started = time.monotonic()
            status, _, body = _get(web)
            elapsed = time.monotonic() - started
            assert status == 200
            assert json.loads(body)["instance"] == "reviews-b"
            assert elapsed < request_timeout_ms / 1000 / 2, "the per-try timeout, not the request timeout, struck"
        assert slow.count >= 1
        assert _sample(scrape(web), "mesh_retries_total", reason="per_try_timeout", outcome="retried") == slow.count


def test_a_per_try_timeout_with_no_retry_left_is_a_timeout(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        up.behave("hang")
        web = built.agent("web", 1)
        policy = _retry_policy(attempts=1, per_try_timeout_ms=150)
        built.configure(web, 1, _destination(up, policy=policy, timeout_ms=10_000))
        started = time.monotonic()
        status, headers, body = _get(web)
        assert (status, _mesh_error(headers, body)) == (504, "timeout")
        assert "per-try" in json.loads(body)["detail"]
        assert time.monotonic() - started < 5
        assert up.count == 2


def test_resets_and_refused_connections_are_retried_elsewhere(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [resetting, good]:
        resetting.behave("reset")
        web = built.agent("web", 1)
        policy = _retry_policy(attempts=1, on_5xx=False, on_reset=True, on_connect_failure=True)
        built.configure(web, 1, _destination(resetting, good, policy=policy))
        assert all(_get(web)[0] == 200 for _ in range(6))
        assert resetting.count >= 1
        assert _sample(scrape(web), "mesh_retries_total", reason="reset", outcome="retried") == resetting.count
        # A refused connection: an endpoint where nothing listens.
        dead = MisbehavingUpstream("reviews-dead", built.loop)
        dead.port = 1
        built.configure(web, 2, _destination(dead, good, policy=policy))
        assert all(_get(web)[0] == 200 for _ in range(4))
        assert _sample(scrape(web), "mesh_retries_total", reason="connect_failure", outcome="retried") >= 1
        # Without on_reset, a reset is answered as it is.
        policy = _retry_policy(attempts=1, on_5xx=True)
        built.configure(web, 3, _destination(resetting, policy=policy))
        status, headers, body = _get(web)
        assert (status, _mesh_error(headers, body)) == (502, "upstream_reset")


# Weighted split and load balancers


def test_a_ninety_ten_split_holds_over_two_thousand_requests(built: Mesh) -> None:
    with upstreams(("reviews-v1", "v1"), ("reviews-v2", "v2"), ("reviews-v3", "v3")) as [v1, v2, v3]:
        web = built.agent("web", 1)
        split = [P.SplitEntry(version="v1", weight=90), P.SplitEntry(version="v2", weight=10)]
        built.configure(web, 1, _destination(v1, v2, v3, policy=P.TrafficPolicy(split=split)))
        n, p = 2000, 0.10
        conn = http.client.HTTPConnection("127.0.0.1", web.ports["outbound"], timeout=30)
        for _ in range(n):
            conn.request("GET", "/", headers={"Host": "reviews"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.close()
        assert v3.count == 0, "a version the split does not list gets nothing"
        assert v1.count + v2.count == n
        # Binomial: 5 standard deviations either side of the expected share (a false alarm ~1 in 1.7 million).
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(v2.count - n * p) <= 5 * sigma, (v1.count, v2.count)


def test_a_split_version_without_endpoints_gives_its_share_to_the_other_listed_ones(built: Mesh) -> None:
    with upstreams(("reviews-v2", "v2"), ("reviews-v3", "v3")) as [v2, v3]:
        web = built.agent("web", 1)
        split = [P.SplitEntry(version="v1", weight=90), P.SplitEntry(version="v2", weight=10)]
        built.configure(web, 1, _destination(v2, v3, policy=P.TrafficPolicy(split=split)))
        assert all(_get(web)[0] == 200 for _ in range(20))
        assert (v2.count, v3.count) == (20, 0)
        nowhere = [P.SplitEntry(version="v1", weight=100), P.SplitEntry(version="v3", weight=0)]
        built.configure(web, 2, _destination(v2, v3, policy=P.TrafficPolicy(split=nowhere)))
        status, headers, body = _get(web)
        assert (status, _mesh_error(headers, body)) == (503, "no_healthy_upstream")
        assert v3.count == 0, "a weight of 0 is never picked, even as a fallback"


def test_a_split_with_retries_keeps_to_the_listed_versions(built: Mesh) -> None:
    with upstreams(("reviews-v1", "v1"), ("reviews-v2", "v2"), ("reviews-v3", "v3")) as [v1, v2, v3]:
        v1.behave(503)
        web = built.agent("web", 1)
        policy = _retry_policy(attempts=2)
        policy.split.extend([P.SplitEntry(version="v1", weight=50), P.SplitEntry(version="v2", weight=50)])
        built.configure(web, 1, _destination(v1, v2, v3, policy=policy))
        assert all(_get(web)[0] == 200 for _ in range(20))
        assert v3.count == 0
        assert v2.count == 20


def test_consistent_hash_keeps_a_key_on_one_endpoint_and_spreads_keys(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1"), ("reviews-c", "v1")) as ups:
        web = built.agent("web", 1)
        built.configure(
            web,
            1,
            _destination(*ups, load_balancer=P.LOAD_BALANCER_CONSISTENT_HASH, hash_header="x-user"),
        )
        owners: dict[str, set[str]] = {}
        for user in range(60):
            for _ in range(2):
                status, _, body = _get(web, **{"x-user": f"user-{user}"})
                assert status == 200
                owners.setdefault(f"user-{user}", set()).add(json.loads(body)["instance"])
        assert all(len(instances) == 1 for instances in owners.values()), owners
        assert len({next(iter(instances)) for instances in owners.values()}) == 3, "sixty keys reach all three"
        # Without the header a request still goes somewhere.
        assert _get(web)[0] == 200


def test_random_balancing_reaches_every_endpoint(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1"), ("reviews-b", "v1")) as [a, b]:
        web = built.agent("web", 1)
        built.configure(web, 1, _destination(a, b, load_balancer=P.LOAD_BALANCER_RANDOM))
        assert all(_get(web)[0] == 200 for _ in range(100))
        assert a.count + b.count == 100
        assert min(a.count, b.count) > 10  # binomial(100, 0.5): under 11 has a chance of about 1e-15


# Fault injection


def test_an_aborting_fault_answers_its_status_without_calling_the_destination(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        fault = P.FaultInjection(abort_percent=100, abort_status=418)
        built.configure(web, 1, _destination(up, policy=P.TrafficPolicy(name="shop/chaos", fault=fault)))
        status, headers, body = _get(web)
        assert status == 418
        assert _mesh_error(headers, body) == "fault_injected"
        assert "shop/chaos" in json.loads(body)["detail"]
        assert up.count == 0
        assert _sample(scrape(web), "mesh_faults_injected_total", kind="abort") == 1


def test_a_delaying_fault_delays(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        delay_ms = 300
        fault = P.FaultInjection(delay_percent=100, delay_ms=delay_ms)
        built.configure(web, 1, _destination(up, policy=P.TrafficPolicy(fault=fault), timeout_ms=200))
        started = time.monotonic()
        status, _, _ = _get(web)
        assert status == 200, "the request timeout starts after the injected delay"
        assert time.monotonic() - started >= delay_ms / 1000
        assert up.count == 1
        assert _sample(scrape(web), "mesh_faults_injected_total", kind="delay") == 1


# Config


def test_a_policy_change_applies_to_the_next_request_and_metrics_are_on_the_admin_port(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        built.configure(web, 1, _destination(up))
        assert _get(web)[0] == 200
        fault = P.FaultInjection(abort_percent=100, abort_status=503)
        built.configure(web, 2, _destination(up, policy=P.TrafficPolicy(fault=fault)))
        assert _get(web)[0] == 503
        built.configure(web, 3, _destination(up))
        assert _get(web)[0] == 200
        text = scrape(web)
        for family in ("mesh_retries", "mesh_circuit_open", "mesh_ejections", "mesh_ejected_endpoints"):
            assert f"# TYPE {family}" in text


def test_a_bad_policy_is_rejected_whole_and_the_old_one_kept(built: Mesh) -> None:
    with upstreams(("reviews-a", "v1")) as [up]:
        web = built.agent("web", 1)
        built.configure(web, 1, _destination(up))
        bad = _destination(up, policy=P.TrafficPolicy(split=[P.SplitEntry(version="v1", weight=60)]))
        accepted, reason = built.apply(web, P.Snapshot(version=2, destinations=[bad]))
        assert not accepted
        assert "sum to 60" in reason
        assert web.store.version == 1
        assert _get(web)[0] == 200


def test_retries_cross_a_real_callee_sidecar(two_hops: TwoHops) -> None:
    policy = _retry_policy(attempts=2)
    destination = P.Destination(
        service="reviews",
        namespace="shop",
        endpoints=[P.Endpoint(address="127.0.0.1", port=two_hops.reviews.ports["inbound"], workload="reviews-v1")],
        traffic_policy=policy,
    )
    two_hops.mesh.configure(two_hops.web, 2, destination)
    status, headers, body = two_hops.get("/status?code=503")
    assert status == 503
    assert "x-mesh-error" not in headers, "the app's own 503, answered once the attempts ran out"
    assert json.loads(body) == {"app": "error"}
    assert len(two_hops.app.requests) == 3
    assert _sample(scrape(two_hops.web), "mesh_retries_total", reason="5xx", outcome="retried") == 2
    status, _, body = two_hops.get("/echo")
    assert status == 200
    assert json.loads(body)["headers"]["x-mesh-hops"] == "2"
