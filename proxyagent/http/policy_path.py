"""The policy path: one request to a destination with a traffic policy, from admission to its last try.

The ``Exchange`` keeps doing the HTTP (framing, streaming, keep-alive,
timeouts); at its decision points it asks its ``PolicyRequest``:

- ``start``: inject a delay (``mesh.fault.delay`` span event) or an abort
  (``fault_injected``, the policy's status), then admit the request past the
  circuit breaker's ``max_requests`` (else 503 ``circuit_open``), pick the
  first endpoint and get it a connection: an idle one, a new one within
  ``max_connections``, or a place in line within ``max_pending_requests``
  (else ``circuit_open``).
- ``record``: keep the request body for replay while the request may be
  retried: an idempotent method (or ``non_idempotent``), no upgrade, and a
  body within ``max_replay_body_bytes`` (a chunked body is kept until it
  grows past it, and from then on it is only streamed).
- ``response_head``, ``retry`` and ``deadline``: every try's outcome counts
  for its endpoint's outlier detection; a 5xx, a failed connect, a reset or
  a per-try timeout is retried, if the policy says so for that failure and
  attempts, time and the retry budget are left, on another endpoint where
  one is left (``mesh.retry`` span event, ``mesh_retries_total``). A per-try
  timeout is retried whenever retries are configured: a try that does not
  answer is what the per-try timeout is for. A retry the budget refuses
  answers the failure as it was (``mesh.retry.budget_exhausted`` event).
- ``finished``: give back what the request held and add its tries to the span.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from proxyagent.balancer import EndpointKey
from proxyagent.http.heads import RequestHead
from proxyagent.http.proxy import Target
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.otlp_wire import AttributeCache, span_attribute, span_event
from proxyagent.resilience.circuit_breaker import CircuitBreakerState
from proxyagent.resilience.destination import DestinationPolicy
from proxyagent.resilience.outlier import OutlierDetector
from proxyagent.resilience.retry_budget import RetryBudgetTracker
from proxyagent.routing import RetryPolicy

if TYPE_CHECKING:
    from proxyagent.http.exchange import Exchange
    from proxyagent.http.upstream import UpstreamConnection

logger = logging.getLogger(__name__)

# RFC 9110 9.2.2: a request with one of these methods may be sent twice.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
_GATEWAY_STATUSES = frozenset({502, 503, 504})
NEVER = float("inf")

# Why a try failed: the reason label of mesh_retries_total and of the span events.
REASON_5XX = "5xx"
REASON_CONNECT_FAILURE = "connect_failure"
REASON_RESET = "reset"
REASON_PER_TRY_TIMEOUT = "per_try_timeout"

# Encoded once: a span attribute per request would cost more than the policy path's own work.
_TRIES = [span_attribute("mesh.tries", tries) for tries in range(12)]
_POLICY_NAMES = AttributeCache()


def header_value(head: RequestHead, name: bytes) -> bytes | None:
    """The first value of the (lowercase) header ``name``."""
    for key, value in head.headers:
        if key.lower() == name:
            return value
    return None


def _chance(percent: float) -> bool:
    return percent >= 100.0 or (percent > 0.0 and random.random() * 100.0 < percent)  # noqa: S311


class PolicyRequest:
    __slots__ = (
        "_admitted",
        "_breaker",
        "_budget",
        "_delay",
        "_detector",
        "_done",
        "_events",
        "_exchange",
        "_hash_key",
        "_holds_retry",
        "_policy",
        "_replay",
        "_replay_bytes",
        "_request_deadline",
        "_retry",
        "_retry_reason",
        "_tried",
        "_tries",
        "_try_deadline",
        "_waiting",
    )

    def __init__(self, exchange: Exchange, policy: DestinationPolicy) -> None:
        self._exchange = exchange
        self._policy = policy
        traffic = policy.traffic
        self._retry: RetryPolicy | None = traffic.retries if traffic is not None else None
        self._breaker: CircuitBreakerState = policy.breaker
        self._budget: RetryBudgetTracker = policy.budget
        self._detector: OutlierDetector | None = policy.detector
        head = exchange.head
        hash_header = policy.destination.hash_header
        self._hash_key = header_value(head, hash_header.encode("latin-1")) if hash_header else None
        self._replay: list[bytes] | None = [] if self._replayable(head) else None
        self._replay_bytes = 0
        self._tries = 1
        self._tried: set[EndpointKey] = set()
        self._admitted = False
        self._holds_retry = False
        self._waiting = False
        self._done = False
        self._retry_reason: str | None = None
        self._delay: asyncio.TimerHandle | None = None
        self._request_deadline = NEVER
        self._try_deadline = NEVER
        self._events: list[bytes] = []

    def _replayable(self, head: RequestHead) -> bool:
        retry = self._retry
        if retry is None or retry.attempts == 0 or head.upgrade:
            return False
        if head.method not in IDEMPOTENT_METHODS and not retry.non_idempotent:
            return False
        length = head.content_length
        return length is None or length <= retry.max_replay_body_bytes

    # Called by the exchange

    def start(self) -> None:
        traffic = self._policy.traffic
        fault = traffic.fault if traffic is not None else None
        if fault is not None and _chance(fault.delay_percent):
            self._policy_metric_fault("delay")
            self._event("mesh.fault.delay", (("mesh.fault.delay_ms", round(fault.delay_s * 1000)),))
            # The request timeout starts after the delay, as it does behind Envoy's fault filter.
            self._delay = self._exchange._loop.call_later(fault.delay_s, self._admit)
            return
        self._admit()

    def record(self, data: bytes, body_bytes: int) -> None:
        """Request bytes as they go up (body chunks, framed), kept while the request may be replayed."""
        replay = self._replay
        if replay is None:
            return
        self._replay_bytes += body_bytes
        retry = self._retry
        if retry is not None and self._replay_bytes > retry.max_replay_body_bytes:
            self._replay = None
            return
        replay.append(data)

    def connection_available(self) -> bool:
        """The circuit breaker let this waiting request go (ConnectionWaiter)."""
        self._waiting = False
        if self._exchange._finished:
            return True
        return self._connect(woken=True)

    def reconnect(self) -> None:
        """The pooled connection the try was sent on had been closed by the upstream while idle: send the
        try again on a new connection (not a retry: the endpoint never saw it)."""
        self._connect(woken=False, fresh=True)

    def response_head(self, status: int) -> bool:
        """A try's response head; True when the try is to be retried instead of answered."""
        exchange = self._exchange
        target = exchange._target
        if target is None or self._done:
            return False
        detector = self._detector
        now = exchange._loop.time()
        if detector is not None:
            if status >= 500:
                detector.failure((target.host, target.port), status in _GATEWAY_STATUSES, now)
            else:
                detector.success((target.host, target.port))
        if status >= 500 and self._may_retry(REASON_5XX, now):
            self._retry_reason = REASON_5XX
            return True
        return False

    def retry(self, error: MeshError) -> bool:
        """The exchange is about to answer ``error``: True when a retry takes it over instead."""
        if self._done or not self._admitted:
            return False
        reason = self._retry_reason
        if reason is not None:
            self._retry_reason = None
            self._next_try(reason)
            return True
        if error.code is MeshErrorCode.UPSTREAM_CONNECT_FAILED:
            reason = REASON_CONNECT_FAILURE
        elif error.code is MeshErrorCode.UPSTREAM_RESET:
            reason = REASON_RESET
        else:
            return False
        now = self._exchange._loop.time()
        self._try_failed(now)
        if not self._may_retry(reason, now):
            return False
        self._next_try(reason)
        return True

    def deadline(self, now: float) -> bool:
        """A deadline passed with no response yet: True when this took care of it (a per-try timeout)."""
        if self._done or not self._admitted:
            return False
        if not self._waiting:
            self._try_failed(now)
        if now >= self._request_deadline or now < self._try_deadline:
            return False
        if self._may_retry(REASON_PER_TRY_TIMEOUT, now):
            self._next_try(REASON_PER_TRY_TIMEOUT)
            return True
        retry = self._retry
        per_try = retry.per_try_timeout_s if retry is not None else None
        self._final(
            MeshError(
                MeshErrorCode.TIMEOUT,
                f"no response from {self._policy.service} within the per-try timeout ({per_try or 0:g} s)",
            )
        )
        return True

    def finished(self) -> None:
        """The exchange ended: give back what it held."""
        self._done = True
        if self._delay is not None:
            self._delay.cancel()
            self._delay = None
        if self._waiting:
            self._waiting = False
            self._breaker.cancel(self)
        if self._holds_retry:
            self._holds_retry = False
            self._budget.release()
        if self._admitted:
            self._admitted = False
            self._budget.request_finished()
            self._breaker.request_done()

    def span_extra(self) -> bytes:
        """What the request's span adds: how many tries it took, the policy's name, and the tries' events."""
        tries = self._tries
        parts = [_TRIES[tries] if tries < len(_TRIES) else span_attribute("mesh.tries", tries)]
        traffic = self._policy.traffic
        if traffic is not None and traffic.name:
            parts.append(_POLICY_NAMES.block(traffic.name, (("mesh.traffic_policy", traffic.name),)))
        parts += self._events
        return b"".join(parts)

    # Internals

    def _admit(self) -> None:
        self._delay = None
        exchange = self._exchange
        if exchange._finished:
            return
        policy = self._policy
        traffic = policy.traffic
        fault = traffic.fault if traffic is not None else None
        if fault is not None and _chance(fault.abort_percent):
            self._policy_metric_fault("abort")
            self._final(
                MeshError(
                    MeshErrorCode.FAULT_INJECTED,
                    f"traffic policy {policy.name} aborted the request with {fault.abort_status} (fault injection)",
                    fault.abort_status,
                )
            )
            return
        breaker = self._breaker
        if not breaker.admit_request():
            self._circuit_open(
                "max_requests", f"{breaker.requests} requests in flight (max_requests {breaker.limits.max_requests})"
            )
            return
        self._admitted = True
        self._budget.request_started()
        now = exchange._loop.time()
        target = exchange._target
        assert target is not None
        self._request_deadline = now + target.timeout_s
        endpoint = policy.pick(self._hash_key, self._tried, now)
        if endpoint is None:
            self._final(
                MeshError(
                    MeshErrorCode.NO_HEALTHY_UPSTREAM,
                    f"{policy.service} has no healthy instance of the versions its traffic split allows",
                )
            )
            return
        exchange.switch_target(endpoint)
        self._connect(woken=False)

    def _connect(self, *, woken: bool, fresh: bool = False) -> bool:
        """Get the current try a connection; False when it has to wait in line for one."""
        exchange = self._exchange
        target = exchange._target
        assert target is not None
        pool = exchange._proxy.pool
        conn = None if exchange.head.upgrade or fresh else pool.take_idle(target.host, target.port, target.identity)
        if conn is not None:
            self._arm_try()
            exchange._attach(conn)
            return True
        breaker = self._breaker
        if not breaker.may_open_connection():
            # Idle connections to other endpoints hold the room: close one, and go on when it is gone.
            evicted = self._evict_idle(target)
            if woken or evicted or breaker.may_wait():
                if not woken:
                    breaker.wait(self)
                self._waiting = True
                exchange.deadline = self._request_deadline
                exchange._client.watch(self._request_deadline)
                return False
            limits = breaker.limits
            self._circuit_open(
                "max_pending_requests",
                f"{breaker.connections} connections (max_connections {limits.max_connections}) and "
                f"{breaker.pending} requests waiting for one (max_pending_requests {limits.max_pending_requests})",
            )
            return True
        breaker.connection_opened()
        self._arm_try()
        task = exchange._loop.create_task(self._open(target, self._tries))
        exchange._connecting = exchange._proxy.track_connect(task)
        return True

    def _evict_idle(self, keep: Target) -> bool:
        pool = self._exchange._proxy.pool
        for endpoint in self._policy.destination.endpoints:
            if endpoint.address == keep.host and endpoint.port == keep.port:
                continue
            conn = pool.take_idle(endpoint.address, endpoint.port, endpoint.identity)
            if conn is None:
                continue
            if conn.on_lost is not None:  # one the breaker counts: closing it makes room
                conn.close()
                return True
            pool.release(conn)
        return False

    async def _open(self, target: Target, attempt: int) -> None:
        exchange = self._exchange
        breaker = self._breaker
        try:
            # Its own connection, never one another exchange releases: the breaker counted this one as opening.
            conn = await exchange._proxy.pool.connect(target.host, target.port, target.identity, reuse=False)
        except MeshError as exc:
            breaker.connection_closed()
            self._connect_failed(attempt, exc)
            return
        except Exception as exc:  # a bug of ours or an odd socket error: answer rather than wait for the timeout
            logger.exception("connecting to %s:%d failed", target.host, target.port)
            breaker.connection_closed()
            self._connect_failed(attempt, MeshError(MeshErrorCode.UPSTREAM_CONNECT_FAILED, type(exc).__name__))
            return
        self._track(conn)
        if attempt != self._tries or exchange._finished:
            # The try this was for is over (timed out, or the client left): the connection is still good.
            exchange._proxy.pool.release(conn)
            self._breaker.room_made()
            return
        exchange._connecting = None
        exchange._attach(conn)

    def _connect_failed(self, attempt: int, error: MeshError) -> None:
        exchange = self._exchange
        if attempt != self._tries or exchange._finished:
            return
        exchange._connecting = None
        exchange.fail(error)

    def _track(self, conn: UpstreamConnection) -> None:
        breaker = self._breaker
        if conn.closed:
            breaker.connection_closed()
        else:
            conn.on_lost = breaker.connection_closed

    def _arm_try(self) -> None:
        exchange = self._exchange
        retry = self._retry
        per_try = retry.per_try_timeout_s if retry is not None else None
        self._try_deadline = exchange._loop.time() + per_try if per_try is not None else NEVER
        deadline = min(self._request_deadline, self._try_deadline)
        exchange.deadline = deadline
        exchange._client.watch(deadline)

    def _try_failed(self, now: float) -> None:
        """The current try failed short of a response (connect, reset, timeout): count it for its endpoint."""
        detector = self._detector
        target = self._exchange._target
        if detector is not None and target is not None and target.policy is None:
            detector.failure((target.host, target.port), True, now)

    def _may_retry(self, reason: str, now: float) -> bool:
        retry = self._retry
        if retry is None or self._done or self._exchange.answered:
            return False
        if self._holds_retry:
            # The try that failed was a retry: it is no longer in flight.
            self._holds_retry = False
            self._budget.release()
        if self._tries > retry.attempts or self._replay is None or now >= self._request_deadline:
            return False
        if reason == REASON_5XX:
            wanted = retry.on_5xx
        elif reason == REASON_CONNECT_FAILURE:
            wanted = retry.on_connect_failure
        elif reason == REASON_RESET:
            wanted = retry.on_reset
        else:
            wanted = True
        if not wanted:
            return False
        service = self._policy.service
        if not self._budget.try_acquire(now):
            self._exchange._proxy.metrics.retries.labels(service, reason, "budget_exhausted").inc()
            self._event(
                "mesh.retry.budget_exhausted", (("mesh.retry.attempt", self._tries + 1), ("mesh.retry.reason", reason))
            )
            return False
        self._holds_retry = True
        return True

    def _next_try(self, reason: str) -> None:
        """Send the request again, to another endpoint where one is left."""
        exchange = self._exchange
        failed = exchange._target
        assert failed is not None
        self._tried.add((failed.host, failed.port))
        self._tries += 1
        now = exchange._loop.time()
        target = self._policy.pick(self._hash_key, self._tried, now)
        if target is None:  # the endpoints are gone from the config since the last try
            self._final(MeshError(MeshErrorCode.NO_HEALTHY_UPSTREAM, f"{self._policy.service} has no healthy instance"))
            return
        self._exchange._proxy.metrics.retries.labels(self._policy.service, reason, "retried").inc()
        self._event(
            "mesh.retry",
            (
                ("mesh.retry.attempt", self._tries),
                ("mesh.retry.reason", reason),
                ("mesh.retry.failed_endpoint", f"{failed.host}:{failed.port}"),
                ("mesh.retry.endpoint", f"{target.host}:{target.port}"),
                ("mesh.retry.workload", target.destination_workload),
            ),
        )
        replay = self._replay
        assert replay is not None
        exchange.retry_with(target, replay)
        self._connect(woken=False)

    def _final(self, error: MeshError) -> None:
        """Answer ``error`` with no retry."""
        self._done = True
        self._exchange.fail(error)

    def _circuit_open(self, limit: str, detail: str) -> None:
        service = self._policy.service
        self._exchange._proxy.metrics.circuit_open.labels(service, limit).inc()
        self._final(MeshError(MeshErrorCode.CIRCUIT_OPEN, f"{service}: {detail}"))

    def _policy_metric_fault(self, kind: str) -> None:
        self._exchange._proxy.metrics.faults_injected.labels(self._policy.service, kind).inc()

    def _event(self, name: str, attributes: tuple[tuple[str, str | int], ...]) -> None:
        self._events.append(span_event(name, time.time_ns(), attributes))
