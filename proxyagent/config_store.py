"""The agent's current configuration: validated whole, swapped whole, never rolled back."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable

from proxyagent.protocol.v1 import snapshot_pb2
from proxyagent.routing import EMPTY_TABLE, Destination, Endpoint, LoadBalancerKind, RoutingTable

logger = logging.getLogger(__name__)

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_LOAD_BALANCERS = {
    snapshot_pb2.LOAD_BALANCER_ROUND_ROBIN: LoadBalancerKind.ROUND_ROBIN,
    snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST: LoadBalancerKind.LEAST_REQUEST,
}
_MAX_ENDPOINTS = 10_000


class SnapshotRejected(ValueError):  # noqa: N818 - the agent's answer is literally "rejected"
    """The snapshot cannot be applied; the message is sent back to the control plane."""


def _valid_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return bool(_HOSTNAME.match(address))
    return True


def _endpoint(where: str, proto: snapshot_pb2.Endpoint) -> Endpoint:
    if not _valid_address(proto.address):
        raise SnapshotRejected(f"{where}: invalid address {proto.address!r}")
    if not 1 <= proto.port <= 65535:
        raise SnapshotRejected(f"{where}: port {proto.port} is out of range")
    return Endpoint(
        address=proto.address,
        port=proto.port,
        workload=proto.workload,
        weight=proto.weight or 1,
        labels=dict(proto.labels),
    )


def routing_table_from_snapshot(snapshot: snapshot_pb2.Snapshot) -> RoutingTable:
    """Validate every field before building anything, so a bad snapshot changes nothing."""
    if snapshot.version == 0:
        raise SnapshotRejected("version must be positive")
    destinations: dict[str, Destination] = {}
    for index, proto in enumerate(snapshot.destinations):
        where = f"destinations[{index}]"
        if not _DNS_LABEL.match(proto.service) or not _DNS_LABEL.match(proto.namespace):
            raise SnapshotRejected(f"{where}: service and namespace must be DNS labels")
        if proto.load_balancer not in _LOAD_BALANCERS:
            raise SnapshotRejected(f"{where}: unknown load balancer {proto.load_balancer}")
        if len(proto.endpoints) > _MAX_ENDPOINTS:
            raise SnapshotRejected(f"{where}: more than {_MAX_ENDPOINTS} endpoints")
        endpoints = tuple(_endpoint(f"{where}.endpoints[{i}]", ep) for i, ep in enumerate(proto.endpoints))
        destination = Destination(
            service=proto.service,
            namespace=proto.namespace,
            load_balancer=_LOAD_BALANCERS[proto.load_balancer],
            endpoints=endpoints,
            request_timeout_s=proto.request_timeout_ms / 1000 if proto.request_timeout_ms else None,
        )
        if destination.key in destinations:
            raise SnapshotRejected(f"{where}: {destination.key} is listed twice")
        destinations[destination.key] = destination
    return RoutingTable(version=snapshot.version, destinations=destinations)


class ConfigStore:
    """Holds the routing table the proxy uses. ``apply`` is all-or-nothing.

    A snapshot older than the one held is refused (a delayed push must not
    undo a newer one); the same version again is accepted without change, so
    a push and a heartbeat racing with one snapshot are both fine.
    """

    def __init__(self) -> None:
        self.table: RoutingTable = EMPTY_TABLE
        self.applied_total = 0
        self.rejected_total = 0
        self._listeners: list[Callable[[RoutingTable], None]] = []
        self._reject_listeners: list[Callable[[str], None]] = []

    @property
    def version(self) -> int:
        return self.table.version

    @property
    def has_config(self) -> bool:
        return self.table.version > 0

    def on_change(self, listener: Callable[[RoutingTable], None]) -> None:
        self._listeners.append(listener)

    def on_reject(self, listener: Callable[[str], None]) -> None:
        self._reject_listeners.append(listener)

    def apply(self, snapshot: snapshot_pb2.Snapshot, *, new_epoch: bool = False) -> tuple[bool, str]:
        """Returns ``(accepted, reason)``; a rejection is logged and counted, and the old table stays.

        ``new_epoch`` (on registration) accepts a lower version: the control
        plane's counter went back (its database was restored), and its word is
        the truth again.
        """
        if new_epoch:
            try:
                table = routing_table_from_snapshot(snapshot)
            except SnapshotRejected as exc:
                return self._reject(snapshot.version, str(exc))
            return self._install(table)
        if snapshot.version < self.table.version:
            return self._reject(snapshot.version, f"version {snapshot.version} is older than applied {self.version}")
        if snapshot.version == self.table.version:
            return True, ""
        try:
            table = routing_table_from_snapshot(snapshot)
        except SnapshotRejected as exc:
            return self._reject(snapshot.version, str(exc))
        return self._install(table)

    def _install(self, table: RoutingTable) -> tuple[bool, str]:
        self.table = table
        self.applied_total += 1
        logger.info("applied config version %d (%d destinations)", table.version, len(table.destinations))
        for listener in self._listeners:
            listener(table)
        return True, ""

    def _reject(self, version: int, reason: str) -> tuple[bool, str]:
        self.rejected_total += 1
        logger.warning("rejected config version %d, keeping %d: %s", version, self.version, reason)
        for listener in self._reject_listeners:
            listener(reason)
        return False, reason
