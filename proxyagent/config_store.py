"""The agent's current configuration: validated whole, swapped whole, never rolled back."""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import socket
from collections.abc import Callable

from proxyagent.inbound_policy import InboundPolicyError, inbound_policy_from_proto
from proxyagent.protocol.v1 import snapshot_pb2
from proxyagent.routing import (
    DEFAULT_RETRY_BUDGET,
    EMPTY_TABLE,
    CircuitBreaker,
    Destination,
    Endpoint,
    FaultInjection,
    LoadBalancerKind,
    OutlierDetection,
    RetryBudget,
    RetryPolicy,
    RoutingTable,
    SplitEntry,
    TrafficPolicy,
)
from proxyagent.tls.material import CertificateError, parse_bundle
from proxyagent.tls.spiffe import is_workload_id

logger = logging.getLogger(__name__)

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_LOAD_BALANCERS = {
    snapshot_pb2.LOAD_BALANCER_ROUND_ROBIN: LoadBalancerKind.ROUND_ROBIN,
    snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST: LoadBalancerKind.LEAST_REQUEST,
    snapshot_pb2.LOAD_BALANCER_RANDOM: LoadBalancerKind.RANDOM,
    snapshot_pb2.LOAD_BALANCER_CONSISTENT_HASH: LoadBalancerKind.CONSISTENT_HASH,
}
_MAX_ENDPOINTS = 10_000
# RFC 9110 5.6.2 token, lowercase only: the agent matches header names as they are sent to it, lowercased.
_LOWERCASE_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]*$")
# Wider than the control plane's own limits (10 min timeouts, 1 h intervals), never narrower: an agent must
# not refuse what a valid policy compiles to.
_MAX_TIMEOUT_MS = 3_600_000
_MAX_INTERVAL_MS = 3_600_000
_MAX_ATTEMPTS = 10
_MAX_REPLAY_BODY_BYTES = 16 * 1024 * 1024
_MAX_MIN_RETRIES_PER_SECOND = 100_000
_MAX_CONSECUTIVE = 100_000
_MAX_SPLIT_ENTRIES = 100
_MAX_VERSION_LENGTH = 63
_MAX_POLICY_NAME_LENGTH = 253
# Envoy's outlier-detection defaults, for a snapshot that leaves an interval at 0.
_DEFAULT_OUTLIER_INTERVAL_MS = 10_000
_DEFAULT_BASE_EJECTION_MS = 30_000


class SnapshotRejected(ValueError):  # noqa: N818 - the agent's answer is literally "rejected"
    """The snapshot cannot be applied; the message is sent back to the control plane."""


def _valid_address(address: str) -> bool:
    # inet_pton first: ipaddress.ip_address costs about 5 µs an address, and a snapshot may list thousands.
    # It accepts what ipaddress accepts (no leading zeros in IPv4) but for an IPv6 scope ("fe80::1%eth0").
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        return True
    if "%" in address:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return False
        return True
    return bool(_HOSTNAME.match(address))


def _endpoint(where: str, proto: snapshot_pb2.Endpoint) -> Endpoint:
    if not _valid_address(proto.address):
        raise SnapshotRejected(f"{where}: invalid address {proto.address!r}")
    if not 1 <= proto.port <= 65535:
        raise SnapshotRejected(f"{where}: port {proto.port} is out of range")
    if proto.identity and not is_workload_id(proto.identity):
        raise SnapshotRejected(f"{where}.identity: {proto.identity!r} is not a workload SPIFFE id")
    return Endpoint(
        address=proto.address,
        port=proto.port,
        workload=proto.workload,
        weight=proto.weight or 1,
        # Iterating the map itself: dict(map) goes through the Mapping ABC's keys(), twice as slow.
        labels={key: proto.labels[key] for key in proto.labels},
        identity=proto.identity,
    )


def _percent(where: str, value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise SnapshotRejected(f"{where}: {value} is not a percentage (0-100)")
    return value


def _at_most(where: str, value: int, limit: int) -> int:
    if value > limit:
        raise SnapshotRejected(f"{where}: {value} is more than {limit}")
    return value


def _retries(where: str, proto: snapshot_pb2.RetryPolicy, request_timeout_ms: int) -> RetryPolicy:
    attempts = _at_most(f"{where}.attempts", proto.attempts, _MAX_ATTEMPTS)
    per_try = _at_most(f"{where}.per_try_timeout_ms", proto.per_try_timeout_ms, _MAX_TIMEOUT_MS)
    if per_try and request_timeout_ms and per_try > request_timeout_ms:
        raise SnapshotRejected(
            f"{where}.per_try_timeout_ms: {per_try} ms is longer than the request timeout ({request_timeout_ms} ms)"
        )
    if attempts and not (proto.on_5xx or proto.on_connect_failure or proto.on_reset):
        raise SnapshotRejected(f"{where}: {attempts} attempts but nothing to retry on (5xx, connect failure, reset)")
    return RetryPolicy(
        attempts=attempts,
        per_try_timeout_s=per_try / 1000 if per_try else None,
        on_5xx=proto.on_5xx,
        on_connect_failure=proto.on_connect_failure,
        on_reset=proto.on_reset,
        non_idempotent=proto.non_idempotent,
        max_replay_body_bytes=_at_most(
            f"{where}.max_replay_body_bytes", proto.max_replay_body_bytes, _MAX_REPLAY_BODY_BYTES
        ),
    )


def _retry_budget(where: str, proto: snapshot_pb2.RetryBudget) -> RetryBudget:
    return RetryBudget(
        percent=_percent(f"{where}.percent", proto.percent),
        min_per_second=_at_most(f"{where}.min_per_second", proto.min_per_second, _MAX_MIN_RETRIES_PER_SECOND),
    )


def _outlier_detection(where: str, proto: snapshot_pb2.OutlierDetection) -> OutlierDetection:
    interval_ms = _at_most(f"{where}.interval_ms", proto.interval_ms, _MAX_INTERVAL_MS)
    base_ms = _at_most(f"{where}.base_ejection_ms", proto.base_ejection_ms, _MAX_INTERVAL_MS)
    return OutlierDetection(
        consecutive_5xx=_at_most(f"{where}.consecutive_5xx", proto.consecutive_5xx, _MAX_CONSECUTIVE),
        consecutive_gateway_errors=_at_most(
            f"{where}.consecutive_gateway_errors", proto.consecutive_gateway_errors, _MAX_CONSECUTIVE
        ),
        interval_s=(interval_ms or _DEFAULT_OUTLIER_INTERVAL_MS) / 1000,
        base_ejection_s=(base_ms or _DEFAULT_BASE_EJECTION_MS) / 1000,
        max_ejection_percent=int(_percent(f"{where}.max_ejection_percent", proto.max_ejection_percent)),
    )


def _split(where: str, entries: list[snapshot_pb2.SplitEntry]) -> tuple[SplitEntry, ...]:
    if not entries:
        return ()
    if len(entries) > _MAX_SPLIT_ENTRIES:
        raise SnapshotRejected(f"{where}: more than {_MAX_SPLIT_ENTRIES} entries")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        if not entry.version or len(entry.version) > _MAX_VERSION_LENGTH or not _PRINTABLE.match(entry.version):
            raise SnapshotRejected(f"{at}.version: {entry.version!r} is not a version label value")
        if entry.version in seen:
            raise SnapshotRejected(f"{at}.version: {entry.version!r} is listed twice")
        seen.add(entry.version)
        _at_most(f"{at}.weight", entry.weight, 100)
    total = sum(entry.weight for entry in entries)
    if total != 100:
        raise SnapshotRejected(f"{where}: weights sum to {total}, not 100")
    return tuple(SplitEntry(entry.version, entry.weight) for entry in entries)


def _fault(where: str, proto: snapshot_pb2.FaultInjection) -> FaultInjection:
    delay_percent = _percent(f"{where}.delay_percent", proto.delay_percent)
    delay_ms = _at_most(f"{where}.delay_ms", proto.delay_ms, _MAX_TIMEOUT_MS)
    if delay_percent and not delay_ms:
        raise SnapshotRejected(f"{where}.delay_ms: a delay of {delay_percent} % of requests needs a duration")
    abort_percent = _percent(f"{where}.abort_percent", proto.abort_percent)
    status = proto.abort_status
    if (abort_percent or status) and not 200 <= status <= 599:
        raise SnapshotRejected(f"{where}.abort_status: {status} is not an HTTP status (200-599)")
    return FaultInjection(
        delay_percent=delay_percent, delay_s=delay_ms / 1000, abort_percent=abort_percent, abort_status=status
    )


def _traffic_policy(where: str, proto: snapshot_pb2.TrafficPolicy, request_timeout_ms: int) -> TrafficPolicy:
    if len(proto.name) > _MAX_POLICY_NAME_LENGTH or not _PRINTABLE.match(proto.name):
        raise SnapshotRejected(f"{where}.name: {proto.name!r} is not a printable name of up to 253 characters")
    return TrafficPolicy(
        name=proto.name,
        retries=_retries(f"{where}.retries", proto.retries, request_timeout_ms) if proto.HasField("retries") else None,
        retry_budget=_retry_budget(f"{where}.retry_budget", proto.retry_budget)
        if proto.HasField("retry_budget")
        else DEFAULT_RETRY_BUDGET,
        circuit_breaker=CircuitBreaker(
            max_connections=proto.circuit_breaker.max_connections,
            max_pending_requests=proto.circuit_breaker.max_pending_requests,
            max_requests=proto.circuit_breaker.max_requests,
        )
        if proto.HasField("circuit_breaker")
        else None,
        outlier_detection=_outlier_detection(f"{where}.outlier_detection", proto.outlier_detection)
        if proto.HasField("outlier_detection")
        else None,
        split=_split(f"{where}.split", list(proto.split)),
        fault=_fault(f"{where}.fault", proto.fault) if proto.HasField("fault") else None,
    )


def _destination(where: str, proto: snapshot_pb2.Destination) -> Destination:
    if not _DNS_LABEL.match(proto.service) or not _DNS_LABEL.match(proto.namespace):
        raise SnapshotRejected(f"{where}: service and namespace must be DNS labels")
    if proto.load_balancer not in _LOAD_BALANCERS:
        raise SnapshotRejected(f"{where}: unknown load balancer {proto.load_balancer}")
    load_balancer = _LOAD_BALANCERS[proto.load_balancer]
    if load_balancer is LoadBalancerKind.CONSISTENT_HASH:
        if not _LOWERCASE_TOKEN.match(proto.hash_header):
            raise SnapshotRejected(
                f"{where}.hash_header: {proto.hash_header!r} is not a lowercase HTTP header name "
                "(required by the consistent-hash load balancer)"
            )
    elif proto.hash_header:
        raise SnapshotRejected(f"{where}.hash_header: only the consistent-hash load balancer reads a header")
    if len(proto.endpoints) > _MAX_ENDPOINTS:
        raise SnapshotRejected(f"{where}: more than {_MAX_ENDPOINTS} endpoints")
    timeout_ms = _at_most(f"{where}.request_timeout_ms", proto.request_timeout_ms, _MAX_TIMEOUT_MS)
    endpoints = tuple(_endpoint(f"{where}.endpoints[{i}]", ep) for i, ep in enumerate(proto.endpoints))
    policy = (
        _traffic_policy(f"{where}.traffic_policy", proto.traffic_policy, timeout_ms)
        if proto.HasField("traffic_policy")
        else None
    )
    return Destination(
        service=proto.service,
        namespace=proto.namespace,
        load_balancer=load_balancer,
        endpoints=endpoints,
        request_timeout_s=timeout_ms / 1000 if timeout_ms else None,
        hash_header=proto.hash_header,
        traffic_policy=policy,
    )


def routing_table_from_snapshot(snapshot: snapshot_pb2.Snapshot, trust_bundle: bytes = b"") -> RoutingTable:
    """Validate every field before building anything, so a bad snapshot changes nothing.

    ``trust_bundle``: the bundle held now, kept when the snapshot carries none (empty means unchanged)."""
    return _routing_table(snapshot, trust_bundle, {})[0]


# A destination as it came over the wire (serialized deterministically) → what it was validated into.
ParsedDestinations = dict[bytes, Destination]


def _routing_table(
    snapshot: snapshot_pb2.Snapshot, trust_bundle: bytes, known: ParsedDestinations
) -> tuple[RoutingTable, ParsedDestinations]:
    """The table, and its destinations by their wire form; a destination found in ``known`` is not validated again.

    Every push carries every destination, and most pushes change one or two: validating a destination costs
    about 25 times serializing it, so the agent compares wire forms and keeps the destinations it already
    checked. Validating a destination reads nothing outside it, so an unchanged one is still valid.
    """
    if snapshot.version == 0:
        raise SnapshotRejected("version must be positive")
    destinations: dict[str, Destination] = {}
    parsed: ParsedDestinations = {}
    for index, proto in enumerate(snapshot.destinations):
        where = f"destinations[{index}]"
        wire = proto.SerializeToString(deterministic=True)
        destination = known.get(wire)
        if destination is None:
            destination = _destination(where, proto)
        if destination.key in destinations:
            raise SnapshotRejected(f"{where}: {destination.key} is listed twice")
        destinations[destination.key] = destination
        parsed[wire] = destination
    try:
        inbound = inbound_policy_from_proto(snapshot.inbound)
    except InboundPolicyError as exc:
        raise SnapshotRejected(str(exc)) from None
    # Parsed only when it changed: every push carries it, and parsing certificates costs more than the rest.
    if snapshot.trust_bundle_pem and snapshot.trust_bundle_pem != trust_bundle:
        try:
            parse_bundle(snapshot.trust_bundle_pem)
        except CertificateError as exc:
            raise SnapshotRejected(f"trust_bundle_pem: {exc}") from None
        trust_bundle = snapshot.trust_bundle_pem
    table = RoutingTable(
        version=snapshot.version,
        destinations=destinations,
        policy_version=snapshot.policy_version,
        inbound=inbound,
        trust_bundle=trust_bundle,
    )
    return table, parsed


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
        # The held table's destinations by wire form (``_routing_table``).
        self._parsed: ParsedDestinations = {}

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
        if not new_epoch:
            if snapshot.version < self.table.version:
                return self._reject(
                    snapshot.version, f"version {snapshot.version} is older than applied {self.version}"
                )
            if snapshot.version == self.table.version:
                return True, ""
        try:
            table, parsed = _routing_table(snapshot, self.table.trust_bundle, self._parsed)
        except SnapshotRejected as exc:
            return self._reject(snapshot.version, str(exc))
        self._parsed = parsed
        return self._install(table)

    def _install(self, table: RoutingTable) -> tuple[bool, str]:
        self.table = table
        self.applied_total += 1
        logger.info(
            "applied config version %d (policy version %d, %d destinations)",
            table.version,
            table.policy_version,
            len(table.destinations),
        )
        for listener in self._listeners:
            listener(table)
        return True, ""

    def _reject(self, version: int, reason: str) -> tuple[bool, str]:
        self.rejected_total += 1
        logger.warning("rejected config version %d, keeping %d: %s", version, self.version, reason)
        for listener in self._reject_listeners:
            listener(reason)
        return False, reason
