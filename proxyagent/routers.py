"""Where requests go: outbound by the destination's name, inbound to the local app."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from proxyagent.balancer import Balancer
from proxyagent.config_store import ConfigStore
from proxyagent.http.headers import PROXY_WRITTEN
from proxyagent.http.heads import RequestHead
from proxyagent.http.proxy import Target
from proxyagent.identity import AgentIdentity
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.routing import Destination, Endpoint, RoutingTable

SOURCE_WORKLOAD_HEADER = b"x-mesh-source-workload"
_OUTBOUND_REPLACES = PROXY_WRITTEN | {SOURCE_WORKLOAD_HEADER}


def _split_target(target: bytes, host: bytes | None) -> tuple[bytes, bytes]:
    """(host, origin-form path) from an origin-form request plus Host, or an absolute-form one (HTTP_PROXY)."""
    if target.startswith((b"http://", b"https://")):
        parts = urlsplit(target)
        path = parts.path or b"/"
        if parts.query:
            path += b"?" + parts.query
        return parts.netloc, path
    if host is None:
        raise MeshError(MeshErrorCode.BAD_REQUEST, "a Host header (the destination service) is required")
    return host, target


# Targets are cached per endpoint (outbound) or caller (inbound); beyond this many a cache starts over.
_MAX_CACHED = 4096

K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    """Put ``value`` in a bounded cache: hosts and callers come from requests, so their number is not ours."""
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[key] = value
    return value


class OutboundRouter:
    """The app's calls out: pick an endpoint of the named destination."""

    direction = "outbound"

    def __init__(
        self, identity: AgentIdentity, store: ConfigStore, balancer: Balancer, default_timeout_s: float
    ) -> None:
        self._identity = identity
        self._store = store
        self._balancer = balancer
        self._default_timeout_s = default_timeout_s
        self._source_header = (SOURCE_WORKLOAD_HEADER, identity.workload.encode())
        # Both caches hold what one routing table implies, and start over when the table is replaced.
        self._table: RoutingTable | None = None
        self._destinations: dict[bytes, Destination] = {}
        self._targets: dict[tuple[str, Endpoint], Target] = {}

    def route(self, head: RequestHead) -> tuple[Target, bytes]:
        fields = head.fields
        return self.route_parts(head.target, fields.get(b"host"), fields.get(SOURCE_WORKLOAD_HEADER))

    def route_parts(self, request_target: bytes, host: bytes | None, source: bytes | None) -> tuple[Target, bytes]:
        """``route`` from the three things it reads: the request target, Host and the caller's workload."""
        host, path = _split_target(request_target, host)
        table = self._store.table
        if table is not self._table:
            self._table = table
            self._destinations = {}
            self._targets = {}
        destination = self._destinations.get(host)
        if destination is None:
            destination = table.lookup(host.decode("latin-1"), own_namespace=self._identity.namespace)
            if destination is not None:
                _remember(self._destinations, host, destination)
        if destination is None:
            raise MeshError(MeshErrorCode.NO_ROUTE, f"no service named {host.decode('latin-1')!r} in the mesh")
        endpoint = self._balancer.pick(destination)
        if endpoint is None:
            raise MeshError(MeshErrorCode.NO_HEALTHY_UPSTREAM, f"{destination.key} has no healthy instance")
        self._balancer.started(endpoint)
        key = (destination.key, endpoint)
        target = self._targets.get(key) or _remember(self._targets, key, self._target(destination, endpoint))
        return target, path

    def _target(self, destination: Destination, endpoint: Endpoint) -> Target:
        balancer = self._balancer
        done: Callable[[], None] = lambda: balancer.finished(endpoint)  # noqa: E731
        return Target(
            host=endpoint.address,
            port=endpoint.port,
            destination_service=destination.key,
            destination_workload=endpoint.workload,
            source_workload=self._identity.workload,
            timeout_s=destination.request_timeout_s or self._default_timeout_s,
            direction=self.direction,
            # Overwrites whatever the app sent, so the callee's metrics name the real caller.
            extra_headers=[self._source_header],
            replaces=_OUTBOUND_REPLACES,
            on_done=done,
        )


class InboundRouter:
    """Calls in from other agents: always to the local app."""

    direction = "inbound"

    def __init__(self, identity: AgentIdentity, app_host: str, app_port: int, timeout_s: float) -> None:
        self._identity = identity
        self._app_host = app_host
        self._app_port = app_port
        self._timeout_s = timeout_s
        self._service = f"{identity.service}.{identity.namespace}"
        self._targets: dict[bytes | None, Target] = {}

    def route(self, head: RequestHead) -> tuple[Target, bytes]:
        fields = head.fields
        return self.route_parts(head.target, fields.get(b"host"), fields.get(SOURCE_WORKLOAD_HEADER))

    def route_parts(self, request_target: bytes, host: bytes | None, source: bytes | None) -> tuple[Target, bytes]:
        target = self._targets.get(source)
        if target is None:
            target = _remember(
                self._targets,
                source,
                Target(
                    host=self._app_host,
                    port=self._app_port,
                    destination_service=self._service,
                    destination_workload=self._identity.workload,
                    source_workload=source.decode("latin-1") if source else "unknown",
                    timeout_s=self._timeout_s,
                    direction=self.direction,
                ),
            )
        path = request_target
        if path[:4] == b"http":
            path = _split_target(request_target, host)[1]
        return target, path
