"""A burst of requests to an endpoint with no idle mutual-TLS connection opens a few connections at a time, not
one per request: the others wait for the first connection released or opened (``TLS_CONNECTS_PER_ENDPOINT``)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from proxyagent.agent import Agent
from proxyagent.http.upstream import TLS_CONNECTS_PER_ENDPOINT
from tests.mtls.conftest import TwoSidecars
from tests.proxyagent.mesh_harness import request
from tests.waiting import until

BURST = TLS_CONNECTS_PER_ENDPOINT + 6


class SilentListener:
    """Accepts TCP connections and never answers: a TLS handshake to it waits until the test closes it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by the test
                return
            with self._lock:
                self.accepted.append(conn)

    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def close_all(self) -> None:
        """Reset every connection accepted (linger 0: an RST, which fails a handshake at once)."""
        with self._lock:
            for conn in self.accepted:
                if conn.fileno() == -1:  # closed already
                    continue
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept (close alone would leave it there).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.close_all()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


def _waiters(agent: Agent) -> int:
    """Exchanges waiting for a connection, on whichever path serves them."""
    assert agent.outbound is not None
    return sum(relay.relay.waiters for relay in agent._relays) + agent.outbound.pool.waiting


def test_a_burst_waits_for_a_few_handshakes_and_shares_their_failure(data_path: str, two_sidecars: TwoSidecars) -> None:
    env, web = two_sidecars.env, two_sidecars.web
    with silent_listener() as listener, ThreadPoolExecutor(BURST) as pool:
        env.control.address_overrides["reviews"] = ("127.0.0.1", listener.port)
        env.control.bump()
        until(lambda: env.applied(web), "web applied the snapshot pointing reviews at the silent listener")

        answers = [pool.submit(request, web.ports["outbound"], "/echo", host="reviews") for _ in range(BURST)]
        # Every request has reached web's sidecar: a few are handshaking, the rest wait behind them.
        until(
            lambda: listener.count() == TLS_CONNECTS_PER_ENDPOINT and _waiters(web) == BURST - listener.count(),
            "the burst split between handshakes and waiters",
        )
        listener.close_all()  # every handshake fails

        results = [answer.result(timeout=30) for answer in answers]
        assert [(status, headers.get("x-mesh-error")) for status, headers, _ in results] == [
            (503, "upstream_connect_failed")
        ] * BURST
        assert all("failed" in json.loads(body)["detail"] for _, _, body in results)
        # Those waiting got the failure of the connects before them rather than trying connections of their own.
        assert listener.count() == TLS_CONNECTS_PER_ENDPOINT
        assert _waiters(web) == 0


def test_a_burst_to_a_cold_endpoint_is_served_whole(data_path: str, two_sidecars: TwoSidecars) -> None:
    web = two_sidecars.web
    burst = 4 * TLS_CONNECTS_PER_ENDPOINT
    with ThreadPoolExecutor(burst) as pool:
        results = list(pool.map(lambda _: request(web.ports["outbound"], "/echo", host="reviews"), range(burst)))

    assert [status for status, _, _ in results] == [200] * burst
    assert all(json.loads(body)["path"] == "/echo" for _, _, body in results)
    assert _waiters(web) == 0
