"""The HTTP/1.1 forwarding engine shared by the outbound and inbound listeners.

One task per downstream connection: read a request head, ask the router where
it goes, stream the body up, stream the response down, then the next request
on the same connection. Bodies are never held whole, and a slow client only
ever holds up its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from proxyagent.http.headers import Headers, end_to_end, get, serialize
from proxyagent.http.messages import ClientGone, RequestHead, RequestReader, ResponseHead, ResponseReader, UpstreamGone
from proxyagent.http.upstream import ConnectionPool, UpstreamConnection
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.metrics import MeshMetrics, status_class
from proxyagent.telemetry import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, Attribute, SpanExporter, SpanRecord
from proxyagent.tracing import TraceContext, continue_or_start

logger = logging.getLogger(__name__)

_HOPS_HEADER = b"x-mesh-hops"
# Safe to send twice (RFC 9110 9.2.2) when a pooled connection turns out to be dead.
_RETRYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
_MAX_HOPS = 8
_CHUNK_END = b"0\r\n\r\n"


@dataclass(slots=True)
class Target:
    """Where one request goes, and what to say about it in metrics."""

    host: str
    port: int
    path: bytes
    destination_service: str
    destination_workload: str
    source_workload: str
    timeout_s: float
    extra_headers: Headers = field(default_factory=list)
    on_done: Callable[[], None] | None = None


class Router(Protocol):
    direction: str

    def route(self, head: RequestHead) -> Target:
        """Where the request goes; raises ``MeshError`` when it cannot go anywhere."""
        ...


@dataclass
class ProxySettings:
    agent_name: str
    # Head sampling for traces this agent starts; a caller's sampling decision is always kept.
    trace_sampling: float = 1.0
    idle_timeout_s: float = 60.0


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class HttpProxy:
    def __init__(
        self,
        router: Router,
        pool: ConnectionPool,
        metrics: MeshMetrics,
        settings: ProxySettings,
        spans: SpanExporter | None = None,
    ) -> None:
        self._router = router
        self._spans = spans
        self._span_kind = SPAN_KIND_CLIENT if router.direction == "outbound" else SPAN_KIND_SERVER
        self._pool = pool
        self._metrics = metrics
        self._settings = settings
        self._via = b"1.1 " + settings.agent_name.encode()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._connections: set[asyncio.Task[None]] = set()

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        requests = RequestReader(reader)
        clock = _ConnectionClock(writer, self._settings.idle_timeout_s)
        try:
            while True:
                head = await requests.next_head()
                if head is None:
                    return
                clock.busy = True
                if not await self._exchange(head, requests, reader, writer, clock):
                    return
                clock.done()
        except MeshError as exc:  # malformed request: answer and close, never forward
            self._metrics.mesh_errors.labels(self._router.direction, str(exc.code)).inc()
            with contextlib.suppress(ConnectionError):
                writer.write(exc.response(keep_alive=False))
                await writer.drain()
        except (ConnectionError, ClientGone):
            pass
        except asyncio.CancelledError:
            # A deadline that fired just as its response arrived lands at the next await:
            # give up on this connection rather than on the task's caller.
            if not clock.expired:
                raise
        except Exception:  # a bug of ours: keep the agent up, drop only this connection
            logger.exception("unexpected error on a %s connection", self._router.direction)
        finally:
            clock.cancel()
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _exchange(
        self,
        head: RequestHead,
        requests: RequestReader,
        client_reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        clock: _ConnectionClock,
    ) -> bool:
        """Proxy one request; returns whether the client connection may carry another."""
        started = time.perf_counter()
        started_ns = time.time_ns()
        direction = self._router.direction
        trace: TraceContext | None = None
        mesh_error: MeshErrorCode | None = None
        labels: tuple[str, str, str, str, str] | None = None
        request_bytes = response_bytes = 0
        status = 0
        target: Target | None = None
        self.in_flight += 1
        self._idle.clear()
        try:
            sample = self._settings.trace_sampling >= 1.0 or random.random() < self._settings.trace_sampling  # noqa: S311
            trace = continue_or_start(get(head.headers, b"traceparent"), sample=sample)
            try:
                hops = int(get(head.headers, _HOPS_HEADER) or b"0")
            except ValueError:
                hops = -1
            if hops < 0:
                raise MeshError(MeshErrorCode.BAD_REQUEST, "x-mesh-hops must be a non-negative number")
            if hops >= _MAX_HOPS:
                raise MeshError(MeshErrorCode.LOOP_DETECTED, f"request passed {hops} mesh hops; is it looping?")
            target = self._router.route(head)
            labels = (direction, target.source_workload, target.destination_service, target.destination_workload, "")
            self._metrics.in_flight_gauge(direction, target.destination_service).inc()
            expect = get(head.headers, b"expect")
            if expect is not None and expect.lower() == b"100-continue" and head.has_body and head.version == "1.1":
                # Answer 100-continue ourselves so the client sends its body while we connect upstream.
                client.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if head.upgrade:
                status = await self._tunnel(head, target, trace, hops, requests, client_reader, client)
                return False
            status, request_bytes, response_bytes, keep = await self._forward(
                head, target, trace, hops, requests, client, clock
            )
            return keep and head.keep_alive
        except MeshError as exc:
            status = exc.status
            mesh_error = exc.code
            self._metrics.mesh_errors.labels(direction, str(exc.code)).inc()
            if exc.code is MeshErrorCode.BAD_REQUEST:
                raise
            # A body we did not read to its end is still on the connection: close rather than
            # read an unbounded amount of it, or mistake it for the next request.
            keep = head.keep_alive and not requests.body_pending
            client.write(exc.response(keep_alive=keep))
            await client.drain()
            return keep
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
            if target is not None:
                self._metrics.in_flight_gauge(direction, target.destination_service).dec()
                if target.on_done is not None:
                    target.on_done()
            if labels is None:
                labels = (direction, "unknown", "unknown", "unknown", "")
            if status:
                elapsed = time.perf_counter() - started
                self._metrics.observe(
                    (*labels[:4], status_class(status)),
                    seconds=elapsed,
                    request_bytes=request_bytes,
                    response_bytes=response_bytes,
                    failed=status >= 500,
                )
                if self._spans is not None and trace is not None and trace.sampled:
                    self._record_span(head, labels, trace, status, mesh_error, started_ns, elapsed)

    def _record_span(
        self,
        head: RequestHead,
        labels: tuple[str, str, str, str, str],
        trace: TraceContext,
        status: int,
        mesh_error: MeshErrorCode | None,
        started_ns: int,
        elapsed_s: float,
    ) -> None:
        assert self._spans is not None
        method = head.method.decode("latin-1")
        attributes: list[Attribute] = [
            ("http.request.method", method),
            ("url.path", head.target.split(b"?", 1)[0].decode("latin-1")),
            ("http.response.status_code", status),
            ("network.protocol.version", head.version),
            ("server.address", labels[2]),
            ("mesh.source.workload", labels[1]),
            ("mesh.destination.service", labels[2]),
            ("mesh.destination.workload", labels[3]),
        ]
        if mesh_error is not None:
            attributes.append(("mesh.error", str(mesh_error)))
            attributes.append(("error.type", str(mesh_error)))
        elif status >= 500:
            attributes.append(("error.type", str(status)))
        self._spans.record(
            SpanRecord(
                trace_id=trace.trace_id,
                span_id=trace.span_id,
                parent_span_id=trace.parent_span_id,
                name=f"{method} {labels[2]}",
                kind=self._span_kind,
                start_ns=started_ns,
                end_ns=started_ns + int(elapsed_s * 1e9),
                error=status >= 500,
                attributes=tuple(attributes),
            )
        )

    def _upstream_head(self, head: RequestHead, target: Target, trace: TraceContext, hops: int) -> bytes:
        replaced = {b"traceparent", b"expect", _HOPS_HEADER, *(name.lower() for name, _ in target.extra_headers)}
        headers = [(n, v) for n, v in end_to_end(head.headers) if n.lower() not in replaced]
        headers.extend(target.extra_headers)
        headers.append((b"traceparent", trace.header()))
        headers.append((b"via", self._via))
        headers.append((_HOPS_HEADER, str(hops + 1).encode()))
        if head.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        elif head.content_length is not None:
            headers.append((b"content-length", str(head.content_length).encode()))
        if head.upgrade:
            headers.append((b"connection", b"upgrade"))
            upgrade = get(head.headers, b"upgrade")
            if upgrade is not None:
                headers.append((b"upgrade", upgrade))
        return serialize(head.method + b" " + target.path + b" HTTP/1.1", headers)

    async def _forward(
        self,
        head: RequestHead,
        target: Target,
        trace: TraceContext,
        hops: int,
        requests: RequestReader,
        client: asyncio.StreamWriter,
        clock: _ConnectionClock,
    ) -> tuple[int, int, int, bool]:
        upstream_head = self._upstream_head(head, target, trace, hops)
        request_bytes = 0
        conn: UpstreamConnection | None = None
        reusable = False
        clock.start_request(target.timeout_s)
        try:
            try:
                conn = await self._pool.acquire(target.host, target.port)
                conn, request_bytes, response = await self._send_request(conn, head, target, upstream_head, requests)
                response_head = await response.read_head()
            except asyncio.CancelledError:
                if not clock.expired:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise MeshError(
                    MeshErrorCode.TIMEOUT, f"no response from {target.destination_service} in {target.timeout_s:g} s"
                ) from None
            except (UpstreamGone, ConnectionError) as exc:
                raise MeshError(MeshErrorCode.UPSTREAM_RESET, str(exc) or type(exc).__name__) from None
            finally:
                clock.end_request()
            response_bytes, keep = await self._relay_response(head, response_head, response, client, target.timeout_s)
            reusable = response.reusable
            return response_head.status, request_bytes, response_bytes, keep
        finally:
            if conn is not None:
                if reusable:
                    self._pool.release(conn)
                else:
                    conn.close()

    async def _send_request(
        self, conn: UpstreamConnection, head: RequestHead, target: Target, upstream_head: bytes, requests: RequestReader
    ) -> tuple[UpstreamConnection, int, ResponseReader]:
        head_only = head.method == b"HEAD"
        if not head.has_body:
            conn.writer.write(upstream_head)
            response = ResponseReader(conn.reader, head_request=head_only)
            if not conn.reused or head.method not in _RETRYABLE_METHODS:
                return conn, 0, response
            # A pooled connection the upstream closed while idle fails on first use; with no
            # body sent yet, one retry on a fresh connection is safe.
            try:
                await conn.writer.drain()
                await response.read_head()
            except (UpstreamGone, ConnectionError):
                if response.got_bytes:
                    raise
                conn.close()
                conn = await self._pool.acquire(target.host, target.port, fresh=True)
                conn.writer.write(upstream_head)
                return conn, 0, ResponseReader(conn.reader, head_request=head_only)
            return conn, 0, response
        writer = conn.writer
        writer.write(upstream_head)
        sent = 0
        async for chunk in requests.body(head):
            sent += len(chunk)
            writer.write(_chunk(chunk) if head.chunked else chunk)
            await writer.drain()
        if head.chunked:
            writer.write(_CHUNK_END)
        await writer.drain()
        return conn, sent, ResponseReader(conn.reader, head_request=head_only)

    async def _relay_response(
        self,
        request: RequestHead,
        head: ResponseHead,
        response: ResponseReader,
        client: asyncio.StreamWriter,
        idle_timeout_s: float,
    ) -> tuple[int, bool]:
        """Stream the response down; returns body bytes sent and whether the client connection stays open."""
        client_http11 = request.version == "1.1"
        has_body = not response.complete
        rechunk = has_body and (head.chunked or response.close_delimited) and client_http11
        keep = request.keep_alive and head.keep_alive and (not has_body or rechunk or head.content_length is not None)
        headers = end_to_end(head.headers)
        headers.append((b"via", self._via))
        if rechunk:
            headers.append((b"transfer-encoding", b"chunked"))
        elif head.content_length is not None:
            headers.append((b"content-length", str(head.content_length).encode()))
        if not keep:
            headers.append((b"connection", b"close"))
        version = b"HTTP/1.1" if client_http11 else b"HTTP/1.0"
        out = [serialize(b"%b %d %b" % (version, head.status, head.reason), headers)]
        sent = 0
        first = response.buffered_body()
        for chunk in first:
            sent += len(chunk)
            out.append(_chunk(chunk) if rechunk else chunk)
        if response.complete and rechunk:
            out.append(_CHUNK_END)
        client.write(b"".join(out))
        if not response.complete:
            try:
                async for chunk in response.body(idle_timeout_s):
                    sent += len(chunk)
                    client.write(_chunk(chunk) if rechunk else chunk)
                    await client.drain()
            except UpstreamGone:
                # The head is out; all we can do is end the connection so the client sees a truncated body.
                logger.warning("upstream reset in the middle of a response body")
                return sent, False
            if rechunk:
                client.write(_CHUNK_END)
        await client.drain()
        return sent, keep

    async def _tunnel(
        self,
        head: RequestHead,
        target: Target,
        trace: TraceContext,
        hops: int,
        requests: RequestReader,
        client_reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
    ) -> int:
        """Upgrade (WebSocket): forward the handshake; after a 101, copy bytes both ways until either side closes."""
        conn = await self._pool.acquire(target.host, target.port, fresh=True)
        try:
            conn.writer.write(self._upstream_head(head, target, trace, hops))
            response = ResponseReader(conn.reader, head_request=False)
            try:
                async with asyncio.timeout(target.timeout_s):
                    response_head = await response.read_head()
            except TimeoutError:
                raise MeshError(MeshErrorCode.TIMEOUT, "no answer to the upgrade request") from None
            except (UpstreamGone, ConnectionError) as exc:
                raise MeshError(MeshErrorCode.UPSTREAM_RESET, str(exc)) from None
            if response_head.status != 101:
                # The client asked to switch protocols and we close either way; say so.
                head.keep_alive = False
                await self._relay_response(head, response_head, response, client, target.timeout_s)
                return response_head.status
            headers = end_to_end(response_head.headers, keep=(b"connection", b"upgrade"))
            client.write(serialize(b"HTTP/1.1 101 %b" % response_head.reason, headers) + response.upgraded_leftover)
            if requests.upgraded_leftover:
                conn.writer.write(requests.upgraded_leftover)
            await asyncio.gather(_pipe(client_reader, conn.writer), _pipe(conn.reader, client))
            return 101
        finally:
            conn.close()

    async def drain(self, deadline_s: float) -> None:
        """Wait for in-flight requests to finish (up to ``deadline_s``), then cancel what is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), deadline_s)
        for task in list(self._connections):
            task.cancel()


class _ConnectionClock:
    """The timeouts of one downstream connection, on one lazily rescheduled timer.

    It closes the connection when it has waited ``idle_s`` for its next
    request, and cancels the connection's task when a request passes its
    deadline (the caller turns that into a ``timeout`` mesh error). A timeout
    context around every read of every request showed up in profiles; here a
    request only stores a float, and the timer fires about once per deadline.
    """

    def __init__(self, writer: asyncio.StreamWriter, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._writer = writer
        self._idle_s = idle_s
        self._task = asyncio.current_task()
        self.busy = False
        self._last = self._loop.time()
        self._deadline: float | None = None
        self.expired = False
        self._fires_at = self._last + idle_s
        self._handle = self._loop.call_at(self._fires_at, self._check)

    def start_request(self, timeout_s: float) -> None:
        self.expired = False
        self._deadline = self._loop.time() + timeout_s
        if self._deadline < self._fires_at:
            self._schedule(self._deadline)

    def end_request(self) -> None:
        self._deadline = None

    def done(self) -> None:
        self.busy = False
        self._last = self._loop.time()

    def _schedule(self, when: float) -> None:
        self._handle.cancel()
        self._fires_at = when
        self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self.expired = True
            if self._task is not None:
                self._task.cancel()
        elif not self.busy and now >= self._last + self._idle_s:
            self._writer.close()
            return
        due = [self._last + self._idle_s] if not self.busy else [now + self._idle_s]
        if self._deadline is not None:
            due.append(self._deadline)
        self._schedule(max(min(due), now + 0.001))

    def cancel(self) -> None:
        self._handle.cancel()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
