"""Where requests go: outbound by the destination's name, inbound to the local app."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from proxyagent.authz.gate import InboundGate
from proxyagent.balancer import Balancer
from proxyagent.config_store import ConfigStore
from proxyagent.http.headers import PROXY_WRITTEN
from proxyagent.http.heads import RequestHead
from proxyagent.http.proxy import Target
from proxyagent.identity import AgentIdentity
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.metrics import MeshMetrics
from proxyagent.resilience.destination import DestinationPolicy
from proxyagent.routing import Destination, Endpoint, LoadBalancerKind, RoutingTable

SOURCE_WORKLOAD_HEADER = b"x-mesh-source-workload"
_OUTBOUND_REPLACES = PROXY_WRITTEN | {SOURCE_WORKLOAD_HEADER}


def _split_target(target: bytes, host: bytes | None) -> tuple[bytes, bytes]:
    """(host, origin-form path) from an origin-form request plus Host, or an absolute-form one (HTTP_PROXY)."""
    if target.startswith((b"http://", b"https://")):
        try:
            parts = urlsplit(target)
        except ValueError as exc:  # "Invalid IPv6 URL", say: the client's mistake, not ours
            raise MeshError(MeshErrorCode.BAD_REQUEST, f"the absolute-form target does not parse: {exc}") from None
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
    """The app's calls out: pick an endpoint of the named destination.

    A destination whose traffic policy needs per-request work gets one target of its own (no endpoint,
    ``policy`` set): the exchange then takes the policy path, which picks endpoints per try through the
    destination's ``DestinationPolicy``.
    """

    direction = "outbound"

    def __init__(
        self,
        identity: AgentIdentity,
        store: ConfigStore,
        balancer: Balancer,
        default_timeout_s: float,
        metrics: MeshMetrics | None = None,
        *,
        mtls: bool = False,
    ) -> None:
        self._identity = identity
        # Every endpoint is another sidecar's inbound port: with mTLS on, connections to all of them are mTLS.
        self._mtls = mtls
        self._store = store
        self._balancer = balancer
        self._default_timeout_s = default_timeout_s
        self._metrics = metrics if metrics is not None else MeshMetrics()
        self._source_header = (SOURCE_WORKLOAD_HEADER, identity.workload.encode())
        # The caches hold what one routing table implies, and start over when the table is replaced.
        self._table: RoutingTable | None = None
        self._destinations: dict[bytes, Destination] = {}
        self._targets: dict[tuple[str, Endpoint], Target] = {}
        self._policy_targets: dict[str, Target] = {}
        # Outlives tables: breaker counts, budgets and ejections carry over to the next snapshot.
        self._policies: dict[str, DestinationPolicy] = {}
        # At once rather than at the next request: ejection timers and gauges of a policy that is gone stop.
        store.on_change(self._new_table)

    def route(self, head: RequestHead, peer: str = "") -> tuple[Target, bytes]:
        fields = head.fields
        return self.route_parts(head.target, fields.get(b"host"), fields.get(SOURCE_WORKLOAD_HEADER))

    def route_parts(
        self, request_target: bytes, host: bytes | None, source: bytes | None, peer: str = ""
    ) -> tuple[Target, bytes]:
        """``route`` from the three things it reads: the request target, Host and the caller's workload
        (``peer``, the app's connection, is always plaintext on localhost)."""
        host, path = _split_target(request_target, host)
        table = self._store.table
        if table is not self._table:
            self._new_table(table)
        destination = self._destinations.get(host)
        if destination is None:
            destination = table.lookup(host.decode("latin-1"), own_namespace=self._identity.namespace)
            if destination is not None:
                _remember(self._destinations, host, destination)
        if destination is None:
            raise MeshError(MeshErrorCode.NO_ROUTE, f"no service named {host.decode('latin-1')!r} in the mesh")
        # Attribute tests first: a destination with neither takes the fast path without a property call.
        if (
            destination.traffic_policy is not None or destination.load_balancer is LoadBalancerKind.CONSISTENT_HASH
        ) and destination.policy_path:
            if not destination.endpoints:
                raise MeshError(MeshErrorCode.NO_HEALTHY_UPSTREAM, f"{destination.key} has no healthy instance")
            policy_target = self._policy_targets.get(destination.key) or self._policy_target(destination)
            return policy_target, path
        endpoint = self._balancer.pick(destination)
        if endpoint is None:
            raise MeshError(MeshErrorCode.NO_HEALTHY_UPSTREAM, f"{destination.key} has no healthy instance")
        self._balancer.started(endpoint)
        key = (destination.key, endpoint)
        target = self._targets.get(key) or _remember(self._targets, key, self._target(destination, endpoint))
        return target, path

    def _new_table(self, table: RoutingTable) -> None:
        self._table = table
        self._destinations = {}
        self._targets = {}
        self._policy_targets = {}
        for key, policy in list(self._policies.items()):
            destination = table.destinations.get(key)
            if destination is not None and destination.policy_path:
                policy.update(destination)
            else:
                del self._policies[key]
                policy.close()
        self._balancer.forget(table.destinations.keys())

    def _policy_target(self, destination: Destination) -> Target:
        policy = self._policies.get(destination.key)
        if policy is None:
            policy = self._policies[destination.key] = DestinationPolicy(
                destination, self._balancer, self._metrics, self._endpoint_target
            )
        elif policy.destination is not destination:
            policy.update(destination)
        target = Target(
            host="",
            port=0,
            destination_service=destination.key,
            # Until the policy path picks an endpoint: what a request refused before that (circuit_open,
            # fault_injected) is recorded with.
            destination_workload="unknown",
            source_workload=self._identity.workload,
            timeout_s=destination.request_timeout_s or self._default_timeout_s,
            direction=self.direction,
            extra_headers=[self._source_header],
            replaces=_OUTBOUND_REPLACES,
            policy=policy,
            mtls=self._mtls,
        )
        self._policy_targets[destination.key] = target
        return target

    def _endpoint_target(self, destination: Destination, endpoint: Endpoint) -> Target:
        """The cached target of one endpoint, for a try on the policy path."""
        table = self._store.table
        if table is not self._table:
            self._new_table(table)
        key = (destination.key, endpoint)
        return self._targets.get(key) or _remember(self._targets, key, self._target(destination, endpoint))

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
            mtls=self._mtls,
            identity=endpoint.identity,
        )


class InboundRouter:
    """Calls in from other agents: always to the local app, through the service's inbound gate when its
    policy (``store``'s table) has anything to enforce."""

    direction = "inbound"

    def __init__(
        self,
        identity: AgentIdentity,
        app_host: str,
        app_port: int,
        timeout_s: float,
        store: ConfigStore | None = None,
        *,
        fail_closed: bool = False,
    ) -> None:
        self._identity = identity
        self._app_host = app_host
        self._app_port = app_port
        self._timeout_s = timeout_s
        self._service = f"{identity.service}.{identity.namespace}"
        # By (x-mesh-source-workload, the caller's verified SPIFFE id or "" for plaintext).
        self._targets: dict[tuple[bytes | None, str], Target] = {}
        self._gate: InboundGate | None = None
        # With fail_closed (mTLS mode), calls are refused until the first snapshot says what the policy is.
        self._fail_closed = fail_closed
        self._refusing = False
        # Read at each request rather than through a change listener, which an earlier listener's failure
        # would skip: the gate never lags the store's table.
        self._store = store
        self._table: RoutingTable | None = None
        if store is not None:
            self._new_table(store.table)

    def _new_table(self, table: RoutingTable) -> None:
        """The gate of the new table's inbound policy; cached targets carry the old one, so they go."""
        self._table = table
        self._refusing = self._fail_closed and not table.version
        gate = InboundGate(table.inbound, self._identity.service, self._identity.namespace, self._app_port)
        self._gate = None if gate.open else gate
        self._targets = {}

    def route(self, head: RequestHead, peer: str = "") -> tuple[Target, bytes]:
        fields = head.fields
        return self.route_parts(head.target, fields.get(b"host"), fields.get(SOURCE_WORKLOAD_HEADER), peer)

    def route_parts(
        self, request_target: bytes, host: bytes | None, source: bytes | None, peer: str = ""
    ) -> tuple[Target, bytes]:
        """To the app; ``peer`` is the caller's SPIFFE id when its connection is mutual TLS."""
        store = self._store
        if store is not None and store.table is not self._table:
            self._new_table(store.table)
        if self._refusing:
            raise MeshError(
                MeshErrorCode.NO_HEALTHY_UPSTREAM,
                f"the sidecar of {self._service} has no config yet, so it does not know the service's policy",
            )
        key = (source, peer)
        target = self._targets.get(key)
        if target is None:
            target = _remember(
                self._targets,
                key,
                Target(
                    host=self._app_host,
                    port=self._app_port,
                    destination_service=self._service,
                    destination_workload=self._identity.workload,
                    source_workload=source.decode("latin-1") if source else "unknown",
                    timeout_s=self._timeout_s,
                    direction=self.direction,
                    mtls=bool(peer),
                    identity=peer,
                    gate=self._gate,
                ),
            )
        path = request_target
        if path[:4] == b"http":
            path = _split_target(request_target, host)[1]
        return target, path
