"""One request and its response, from the client's head to the last body byte (or the end of a tunnel).

An exchange is driven from protocol callbacks: the client connection hands it
the request head and body, the upstream connection hands it response bytes,
which it parses and writes down. Its one timer enforces the request timeout
(until the response head) and then catches a response body that stalls.

A request to a destination with a traffic policy also has a ``PolicyRequest``
(``policy_path``), which the exchange asks at admission, at each response
head, failure and deadline, and at its end: it may start another try, which
the exchange sends like the first. Other requests pay one ``is None`` test at
each of those points.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

import httptools

from proxyagent.http.headers import (
    INBOUND_RESPONSE_NOT_FORWARDED,
    MESH_MARKERS,
    NOT_FORWARDED,
    REQUEST_NOT_FORWARDED,
    Headers,
    connection_names_only,
    end_to_end,
    header_lines,
    index_and_serialize,
    serialize,
)
from proxyagent.http.heads import RESPONSE_FIELDS, RequestHead, framing
from proxyagent.http.policy_path import PolicyRequest
from proxyagent.http.proxy import HttpProxy, Target
from proxyagent.http.upstream import UpstreamConnection
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.otlp_wire import span_attribute
from proxyagent.tracing import TraceContext, continue_or_start

if TYPE_CHECKING:
    from proxyagent.authz.gate import InboundGate
    from proxyagent.http.downstream import DownstreamConnection

logger = logging.getLogger(__name__)

_HOPS_HEADER = b"x-mesh-hops"
# Safe to send twice (RFC 9110 9.2.2) when a pooled connection turns out to be dead.
_RETRYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
_MAX_HOPS = 8
_UPGRADE_HEADERS = frozenset({b"connection", b"upgrade"})
_CHUNK_END = b"0\r\n\r\n"
# Request body held while no upstream connection exists yet; beyond it the client is paused.
_MAX_BUFFERED = 256 * 1024
# Why reading from a client connection is paused; it resumes when no reason is left.
PAUSE_QUEUED = 1  # pipelined requests wait behind the one being answered
PAUSE_UPSTREAM = 2  # the upstream does not take the request body as fast as it comes
PAUSE_BUFFERED = 4  # body bytes wait for an upstream connection
PAUSE_TUNNEL = 8  # bytes after an upgrade request wait for the upstream's 101


# A deadline that never comes (an exchange with no timer due).
NEVER = float("inf")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Exchange:
    __slots__ = (
        "_authz_span",
        "_broken",
        "_client",
        "_close_delimited",
        "_conn",
        "_connecting",
        "_down_buf",
        "_eofs",
        "_extra_message",
        "_finished",
        "_got_bytes",
        "_head_sent",
        "_interim",
        "_keep",
        "_last_data",
        "_loop",
        "_mesh_error",
        "_parser",
        "_policy",
        "_proxy",
        "_r_headers",
        "_r_reason",
        "_raw_pending",
        "_rechunk",
        "_request_bytes",
        "_request_done",
        "_response_bytes",
        "_response_done",
        "_retried",
        "_running",
        "_started",
        "_started_ns",
        "_status",
        "_target",
        "_trace",
        "_tunnel",
        "_up_buf",
        "_up_buffered",
        "_upstream_head",
        "_upstream_keep",
        "_upstream_reading_paused",
        "answered",
        "deadline",
        "head",
    )

    def __init__(self, proxy: HttpProxy, client: DownstreamConnection, head: RequestHead) -> None:
        self._proxy = proxy
        self._client = client
        self.head = head
        self._loop = client.loop
        self._request_done = not head.has_body
        self._up_buf: list[bytes] = []
        self._up_buffered = 0
        self._conn: UpstreamConnection | None = None
        self._target: Target | None = None
        # Span attributes of the inbound gate's decision (the policy, the request principal).
        self._authz_span = b""
        self._trace: TraceContext | None = None
        self._started = 0.0
        self._started_ns = 0
        self._status = 0
        self._mesh_error: MeshErrorCode | None = None
        self._request_bytes = 0
        self._response_bytes = 0
        self.answered = False  # the response head went to the client
        self._finished = False
        self._running = False
        # When the client connection's timer should call check_deadline (loop time).
        self.deadline = NEVER
        self._connecting: asyncio.Task[None] | None = None
        self._upstream_head = b""
        self._retried = False
        self._parser: httptools.HttpResponseParser | None = None
        self._r_headers: Headers = []
        self._r_reason = b""
        self._interim = False
        self._response_done = False
        self._extra_message = False
        self._got_bytes = False
        self._broken: str | None = None
        self._rechunk = False
        self._keep = False
        self._upstream_keep = False
        self._close_delimited = False
        self._down_buf: list[bytes] = []
        self._last_data = 0.0
        self._tunnel = False
        self._raw_pending: list[bytes] = []
        self._eofs = 0
        self._upstream_reading_paused = False
        self._head_sent = False
        # Set when the route is a destination with a traffic policy (proxyagent.http.policy_path).
        self._policy: PolicyRequest | None = None

    @property
    def peer_identity(self) -> str:
        """The caller's verified SPIFFE id when its connection is mutual TLS, else "" (for authorization)."""
        return self._client.peer_identity

    # Request side (called by the client connection)

    def start(self) -> None:
        proxy = self._proxy
        proxy.in_flight += 1
        self._running = True
        self._started = time.perf_counter()
        self._started_ns = time.time_ns()
        head = self.head
        fields = head.fields
        try:
            rate = proxy.settings.trace_sampling
            sample = rate >= 1.0 or random.random() < rate  # noqa: S311
            self._trace = trace = continue_or_start(fields.get(b"traceparent"), sample=sample)
            raw_hops = fields.get(_HOPS_HEADER)
            hops = self._hops(raw_hops) if raw_hops is not None else 0
            target, path = proxy.router.route(head, self._client.peer_identity)
            self._target = target
            proxy.target_started(target)
            gate = target.gate
            if gate is not None:
                path = self._admit(target, gate, path)
            if head.has_body and head.version == "1.1":
                expect = fields.get(b"expect")
                if expect is not None and expect.lower() == b"100-continue":
                    # Answer 100-continue ourselves so the client sends its body while we connect upstream.
                    self._client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._upstream_head = self._build_upstream_head(target, path, trace, hops)
            self._up_buf.insert(0, self._upstream_head)
            if target.policy is not None:
                # The policy path picks the endpoint, times the tries and gets their connections.
                self._policy = PolicyRequest(self, target.policy)
                self._policy.start()
                return
            self.deadline = self._loop.time() + target.timeout_s
            self._client.watch(self.deadline)
            conn = None if head.upgrade else proxy.pool.take_idle(target.host, target.port, target.identity)
            if conn is not None:
                self._attach(conn)
            else:
                self._connecting = self._proxy.track_connect(self._loop.create_task(self._connect()))
        except MeshError as exc:
            self.fail(exc)
        except Exception:  # a bug of ours: answer this request rather than leave the connection hanging
            logger.exception("unexpected error starting a %s request", proxy.direction)
            self.fail(MeshError(MeshErrorCode.UPSTREAM_RESET, "the sidecar failed to forward the request"))

    def _admit(self, target: Target, gate: InboundGate, path: bytes) -> bytes:
        """The normalized path the gate authorized, or its ``MeshError``; a denial is counted on the edge the
        request would have taken and the deciding policy goes on the span."""
        head = self.head
        if head.upgrade and (head.fields.get(b"upgrade") or b"").strip().lower() != b"websocket":
            # After another protocol's upgrade (h2c, say) the tunnel would carry requests the gate never sees.
            raise MeshError(MeshErrorCode.BAD_REQUEST, "only WebSocket upgrades are let through to a gated service")
        try:
            admission = gate.admit(head.method, path, head.headers, self._client.peer_identity or None)
        except MeshError as exc:
            if exc.code is MeshErrorCode.DENIED:
                self._proxy.metrics.count_denied(target.edge, exc.status)
                self._authz_span = span_attribute("mesh.authz.policy", exc.policy)
            raise
        if admission.policy_id is not None:
            self._authz_span = span_attribute("mesh.authz.policy", admission.policy_id)
        if admission.request_principal is not None:
            self._authz_span += span_attribute("mesh.request.principal", admission.request_principal)
        return admission.target

    def request_body(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._request_bytes += len(chunk)
        data = _chunk(chunk) if self.head.chunked else chunk
        self._up_buf.append(data)
        if self._policy is not None:
            self._policy.record(data, len(chunk))
        if self._conn is None:
            self._up_buffered += len(chunk)
            if self._up_buffered > _MAX_BUFFERED:
                self._client.pause(PAUSE_BUFFERED)

    def request_end(self) -> None:
        self._request_done = True
        if self.head.chunked and not self._finished:
            self._up_buf.append(_CHUNK_END)
            if self._policy is not None:
                self._policy.record(_CHUNK_END, 0)

    def flush_up(self) -> None:
        """Send the request bytes gathered so far; called once per read from the client."""
        conn = self._conn
        buf = self._up_buf
        if conn is None or not buf:
            return
        conn.write(buf[0] if len(buf) == 1 else b"".join(buf))
        buf.clear()
        self._up_buffered = 0

    def client_raw(self, data: bytes) -> None:
        """Bytes after an upgrade request: tunnelled once the upstream agreed, held until then."""
        if self._tunnel and self._conn is not None:
            self._conn.write(data)
        elif not self._finished:
            self._raw_pending.append(data)
            self._client.pause(PAUSE_TUNNEL)

    def client_eof(self) -> bool:
        conn = self._conn
        if self._tunnel and conn is not None and conn.transport is not None and conn.transport.can_write_eof():
            conn.transport.write_eof()
            self._eofs += 1
            if self._eofs >= 2:
                self._end_tunnel()
                return False
            return True
        return False

    def client_paused(self, paused: bool) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.closed:
            if paused:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()
            self._upstream_reading_paused = paused

    def abort(self) -> None:
        """The client is gone (or sent garbage): drop the upstream side without answering."""
        # A connect in flight is left to finish: cancelling it could strand a socket it just opened.
        self._drop_conn()
        self._finish()

    # Upstream side (UpstreamListener)

    def upstream_data(self, data: bytes) -> None:
        if self._tunnel:
            self._client.write(data)
            return
        parser = self._parser
        if parser is None or self._finished:
            return
        self._got_bytes = True
        self._last_data = self._loop.time()
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._status == 101:
                self._flush_down()
                self._start_tunnel(data[upgrade.args[0] :])
                return
        except httptools.HttpParserError as exc:
            if self._response_done:
                # Junk after a complete response: the response stands, the connection does not.
                self._upstream_keep = False
                self._flush_down()
                self._complete()
                return
            if not self._head_sent:
                # Nothing reached the client yet, so it can still get a proper 502.
                self._down_buf.clear()
                self.answered = False
            self._upstream_broken(self._broken or f"malformed response: {exc}")
            return
        self._flush_down()
        if self._response_done:
            self._complete()

    def upstream_closed(self, eof: bool) -> bool:
        if self._finished:
            return False
        if self._tunnel:
            transport = self._client.transport
            if eof and transport is not None and transport.can_write_eof() and not self._client.closed:
                transport.write_eof()
                self._eofs += 1
                if self._eofs < 2:
                    return True
            self._end_tunnel()
            return False
        conn = self._conn
        if self.answered:
            if self._close_delimited and not self._response_done:
                # EOF is how a response without Content-Length or chunked framing ends.
                if self._rechunk:
                    self._down_buf.append(_CHUNK_END)
                self._response_done = True
                self._upstream_keep = False
                self._flush_down()
                self._complete()
            else:
                logger.warning("upstream reset in the middle of a response body")
                self._cut_short()
            return False
        head = self.head
        if (
            conn is not None
            and conn.reused
            and not self._got_bytes
            and not self._retried
            and not head.has_body
            and head.method in _RETRYABLE_METHODS
        ):
            # A pooled connection the upstream closed while idle fails on first use; with no
            # body sent, one retry on a fresh connection is safe.
            self._retried = True
            self._drop_conn()
            self._up_buf = [self._upstream_head]
            if self._policy is not None:
                self._policy.reconnect()
            else:
                self._connecting = self._proxy.track_connect(self._loop.create_task(self._connect()))
            return False
        self.fail(MeshError(MeshErrorCode.UPSTREAM_RESET, "upstream closed the connection before responding"))
        return False

    def upstream_paused(self, paused: bool) -> None:
        if paused:
            self._client.pause(PAUSE_UPSTREAM)
        else:
            self._client.resume(PAUSE_UPSTREAM)

    # httptools response callbacks

    def on_message_begin(self) -> None:
        if self._response_done:
            self._extra_message = True
        self._r_headers = []

    def on_status(self, status: bytes) -> None:
        self._r_reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._r_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._extra_message:  # bytes after the response's end: never the client's
            return
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (100 Continue, 103 Early Hints): skip it and its end.
            self._interim = True
            return
        inbound = self._proxy.direction == "inbound"
        dropped = INBOUND_RESPONSE_NOT_FORWARDED if inbound else NOT_FORWARDED
        fields, parts = index_and_serialize(self._r_headers, RESPONSE_FIELDS, dropped)
        try:
            chunked, length = framing(fields)
        except MeshError as exc:
            self._broken = f"unsupported response framing: {exc.detail}"
            raise
        self._status = status
        if status == 403:
            self._count_callee_denial()
        request = self.head
        head_only = request.method == b"HEAD"
        connection = fields.get(b"connection")
        if status == 101:
            if not request.upgrade:
                # Switching protocols is the client's choice (RFC 9110 15.2.2), never the upstream's alone.
                self._broken = "upstream switched protocols without an upgrade request"
                raise MeshError(MeshErrorCode.UPSTREAM_RESET, self._broken)
            headers = end_to_end(
                self._r_headers, connection, keep=_UPGRADE_HEADERS, drop=MESH_MARKERS if inbound else frozenset()
            )
            self._down_buf.append(serialize(b"HTTP/1.1 101 " + self._r_reason, headers))
            self.answered = True
            self._response_done = True
            return
        policy = self._policy
        if policy is not None and policy.response_head(status):
            # Retried instead of answered: stop reading this response; fail() hands the try to the policy.
            raise MeshError(MeshErrorCode.UPSTREAM_RESET, "retried")
        has_body = not (head_only or status in (204, 304) or length == 0)
        client_http11 = request.version == "1.1"
        close_delimited = self._close_delimited = has_body and not chunked and length is None
        rechunk = self._rechunk = has_body and (chunked or close_delimited) and client_http11
        upstream_keep = parser.should_keep_alive()
        self._upstream_keep = upstream_keep and not head_only
        keep = self._keep = (
            request.keep_alive
            and upstream_keep
            and not request.upgrade
            and (not has_body or rechunk or length is not None)
        )
        if not connection_names_only(connection, dropped):
            parts = header_lines(end_to_end(self._r_headers, connection, drop=MESH_MARKERS if inbound else frozenset()))
        version = b"HTTP/1.1" if client_http11 else b"HTTP/1.0"
        parts.insert(0, b"%b %d %b\r\n" % (version, status, self._r_reason))
        parts.append(self._proxy.via_header)
        if rechunk:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        if not keep:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self._down_buf.append(b"".join(parts))
        self.answered = True
        if not has_body:
            self._response_done = True

    def _count_callee_denial(self) -> None:
        """Outbound, a 403 ``denied`` from the callee's sidecar: counted on this edge, which the graph draws."""
        target = self._target
        if target is None or self._proxy.direction != "outbound":
            return
        if any(
            name.lower() == b"x-mesh-error" and value.strip().lower() == b"denied" for name, value in self._r_headers
        ):
            self._proxy.metrics.count_denied(target.edge, 403)

    def on_body(self, body: bytes) -> None:
        if self._interim or self._response_done or self._extra_message:
            return
        self._response_bytes += len(body)
        self._down_buf.append(_chunk(body) if self._rechunk else body)

    def on_message_complete(self) -> None:
        if self._extra_message:
            return
        if self._interim:
            self._interim = False
            return
        if not self._response_done and self._rechunk:
            self._down_buf.append(_CHUNK_END)
        self._response_done = True

    # Outcomes

    def fail(self, error: MeshError) -> None:
        """A mesh error: answer it if nothing was answered yet, else cut the response short."""
        if self._finished:
            return
        policy = self._policy
        if policy is not None and not self.answered and policy.retry(error):
            return
        proxy = self._proxy
        proxy.metrics.mesh_errors.labels(proxy.direction, str(error.code)).inc()
        self._drop_conn()
        if self.answered:
            self._cut_short()
            return
        self._status = error.status
        self._mesh_error = error.code
        # A body we did not read to its end is still on the connection: close rather than
        # read an unbounded amount of it, or mistake it for the next request.
        keep = (
            error.code is not MeshErrorCode.BAD_REQUEST
            and self.head.keep_alive
            and self._request_done
            and not self.head.upgrade
        )
        self._client.write(error.response(keep_alive=keep))
        self.answered = True
        self._finish()
        self._client.exchange_finished(self, keep)

    def _complete(self) -> None:
        conn = self._conn
        self._conn = None
        if conn is not None:
            if self._upstream_reading_paused and conn.transport is not None:
                conn.transport.resume_reading()
            if self._upstream_keep and self._request_done and not self._extra_message:
                self._proxy.pool.release(conn)
            else:
                conn.close()
        keep = self._keep and self._request_done
        self._finish()
        self._client.exchange_finished(self, keep)

    def _cut_short(self) -> None:
        """The response head is out but its body cannot be finished: end the connection (a truncated body)."""
        self._drop_conn()
        self._finish()
        self._client.exchange_finished(self, False)

    def _upstream_broken(self, reason: str) -> None:
        self.fail(MeshError(MeshErrorCode.UPSTREAM_RESET, reason))

    def check_deadline(self, now: float) -> None:
        """Called by the client connection's timer once ``now`` is past ``deadline``."""
        if self._finished:
            return
        target = self._target
        assert target is not None
        if not self.answered:
            policy = self._policy
            if policy is not None and policy.deadline(now):
                return
            self.fail(
                MeshError(
                    MeshErrorCode.TIMEOUT, f"no response from {target.destination_service} in {target.timeout_s:g} s"
                )
            )
            return
        # Answered: the deadline now catches a response body that stalls.
        stalled_since = now - self._last_data
        if stalled_since >= target.timeout_s:
            logger.warning("response body stalled for %.1f s; closing", stalled_since)
            self._cut_short()
        else:
            self.deadline = self._last_data + target.timeout_s

    # Tunnels (after a 101)

    def _start_tunnel(self, leftover: bytes) -> None:
        self._tunnel = True
        self.deadline = NEVER
        if leftover:
            self._client.write(leftover)
        conn = self._conn
        if self._raw_pending and conn is not None:
            conn.write(b"".join(self._raw_pending))
            self._raw_pending.clear()
        self._client.resume(PAUSE_TUNNEL)

    def _end_tunnel(self) -> None:
        self._drop_conn()
        self._finish()
        self._client.exchange_finished(self, False)

    # Tries (the policy path)

    def switch_target(self, target: Target) -> None:
        """Send this request to ``target`` (an endpoint the policy path picked) from now on."""
        proxy = self._proxy
        old = self._target
        if old is not None:
            proxy.target_done(old)
        self._target = target
        proxy.target_started(target)

    def retry_with(self, target: Target, replay: list[bytes]) -> None:
        """Start another try of this request on ``target``: the failed try's response is forgotten and the
        request goes up again, head and ``replay`` (the body received so far) first."""
        self._drop_conn()
        self._parser = None
        self._status = 0
        self._r_headers = []
        self._r_reason = b""
        self._interim = False
        self._response_done = False
        self._extra_message = False
        self._got_bytes = False
        self._broken = None
        self._rechunk = False
        self._keep = False
        self._upstream_keep = False
        self._close_delimited = False
        self._down_buf = []
        self._response_bytes = 0
        self._retried = False
        self._upstream_reading_paused = False
        self.switch_target(target)
        self._up_buf = [self._upstream_head, *replay]
        self._up_buffered = sum(len(piece) for piece in replay)
        if self._up_buffered > _MAX_BUFFERED:
            self._client.pause(PAUSE_BUFFERED)

    # Internals

    @staticmethod
    def _hops(raw: bytes) -> int:
        try:
            hops = int(raw)
        except ValueError:
            hops = -1
        if hops < 0:
            raise MeshError(MeshErrorCode.BAD_REQUEST, "x-mesh-hops must be a non-negative number")
        if hops >= _MAX_HOPS:
            raise MeshError(MeshErrorCode.LOOP_DETECTED, f"request passed {hops} mesh hops; is it looping?")
        return hops

    def _build_upstream_head(self, target: Target, path: bytes, trace: TraceContext, hops: int) -> bytes:
        head = self.head
        fields = head.fields
        connection = fields.get(b"connection")
        if connection_names_only(connection, REQUEST_NOT_FORWARDED) and target.extra_dropped.isdisjoint(fields):
            block = head.forwarded
        else:
            # The Connection header names more headers to drop, or the route drops some the client sent.
            block = b"".join(header_lines(end_to_end(head.headers, connection, drop=target.replaces)))
        parts = [head.method, b" ", path, b" HTTP/1.1\r\n", block]
        for name, value in target.extra_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (
            b"traceparent: ",
            trace.header(),
            b"\r\n",
            self._proxy.via_header,
            b"x-mesh-hops: %d\r\n" % (hops + 1),
        )
        if head.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif head.content_length is not None:
            parts.append(b"content-length: %d\r\n" % head.content_length)
        if head.upgrade:
            parts.append(b"connection: upgrade\r\n")
            upgrade = fields.get(b"upgrade")
            if upgrade is not None:
                parts += (b"upgrade: ", upgrade, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _connect(self) -> None:
        target = self._target
        assert target is not None
        try:
            # An upgrade takes a connection of its own (the tunnel keeps it), as it never takes an idle one.
            conn = await self._proxy.pool.connect(
                target.host, target.port, target.identity, reuse=not self.head.upgrade
            )
        except MeshError as exc:
            self._connecting = None
            self.fail(exc)
            return
        except Exception as exc:  # a bug of ours or an odd socket error: answer rather than wait for the timeout
            logger.exception("connecting to %s:%d failed", target.host, target.port)
            self._connecting = None
            self.fail(MeshError(MeshErrorCode.UPSTREAM_CONNECT_FAILED, type(exc).__name__))
            return
        self._connecting = None
        if self._finished:
            # Ended while connecting (or waiting its turn): the connection serves the next exchange instead.
            self._proxy.pool.release(conn)
            return
        self._attach(conn)

    def _attach(self, conn: UpstreamConnection) -> None:
        self._conn = conn
        conn.listener = self
        self._parser = httptools.HttpResponseParser(self)
        if not self._client.feeding:
            # Inside a read the client connection flushes once at its end: head and body in one write.
            self.flush_up()
        self._client.resume(PAUSE_BUFFERED)
        if self._client.write_paused:
            self.client_paused(True)

    def _flush_down(self) -> None:
        buf = self._down_buf
        if buf:
            self._client.write(buf[0] if len(buf) == 1 else b"".join(buf))
            buf.clear()
            self._head_sent = True

    def _drop_conn(self) -> None:
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.close()

    def _finish(self) -> None:
        """Bookkeeping, once: in-flight counts, metrics and the span."""
        if self._finished:
            return
        self._finished = True
        self.deadline = NEVER
        # The parser holds this exchange as its protocol: dropping it ends the cycle, so the exchange is
        # freed by reference counting instead of waiting for a garbage collection.
        self._parser = None
        if not self._running:
            return
        proxy = self._proxy
        proxy.in_flight -= 1
        if not proxy.in_flight:
            proxy.exchange_ended()
        target = self._target
        if target is not None:
            proxy.target_done(target)
        policy = self._policy
        if policy is not None:
            policy.finished()
            self._policy = None  # it refers back to this exchange
        status = self._status
        if not status:
            return
        elapsed = time.perf_counter() - self._started
        edge = (
            target.edge
            if target is not None
            else (proxy.direction, "unknown", "unknown", "unknown", "true" if self._client.peer_identity else "false")
        )
        proxy.observe(edge, status, elapsed, self._request_bytes, self._response_bytes)
        trace = self._trace
        spans = proxy.spans
        if spans is not None and trace is not None and trace.sampled:
            head = self.head
            mesh_error = self._mesh_error
            spans.record(
                trace.trace_id,
                trace.parent_span_id,
                trace.span_id,
                head.method,
                head.target,
                head.version,
                status,
                edge,
                str(mesh_error) if mesh_error is not None else None,
                self._started_ns,
                self._started_ns + int(elapsed * 1e9),
                (target.span_extra if target is not None else b"")
                + (policy.span_extra() if policy is not None else b"")
                + self._authz_span,
            )
