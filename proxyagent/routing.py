"""The agent's view of where it may send requests, built from a validated snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from proxyagent.inbound_policy import EMPTY_INBOUND, InboundPolicy


class LoadBalancerKind(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"
    RANDOM = "random"
    CONSISTENT_HASH = "consistent_hash"


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    workload: str
    weight: int = 1
    # Not part of identity or hash: two endpoints at one address are one endpoint.
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    # The SPIFFE id the endpoint's sidecar presents in mutual TLS ("": not said); a caller refuses any other.
    identity: str = field(default="", compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # Retries after the first try.
    attempts: int
    # None: only the request timeout applies.
    per_try_timeout_s: float | None = None
    on_5xx: bool = False
    on_connect_failure: bool = False
    on_reset: bool = False
    non_idempotent: bool = False
    max_replay_body_bytes: int = 65536


@dataclass(frozen=True, slots=True)
class RetryBudget:
    percent: float
    min_per_second: int


# What the agent assumes when a snapshot asks for retries without a budget: Linkerd's default (and the
# control plane's), so retries can add at most a fifth to the load however many attempts are allowed.
DEFAULT_RETRY_BUDGET = RetryBudget(percent=20.0, min_per_second=10)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """0 means no limit."""

    max_connections: int = 0
    max_pending_requests: int = 0
    max_requests: int = 0

    @property
    def limits_anything(self) -> bool:
        return bool(self.max_connections or self.max_pending_requests or self.max_requests)


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    # 0: that kind of failure never ejects.
    consecutive_5xx: int
    consecutive_gateway_errors: int
    interval_s: float
    base_ejection_s: float
    max_ejection_percent: int

    @property
    def ejects_anything(self) -> bool:
        return bool(self.consecutive_5xx or self.consecutive_gateway_errors) and self.max_ejection_percent > 0


@dataclass(frozen=True, slots=True)
class SplitEntry:
    version: str
    weight: int


@dataclass(frozen=True, slots=True)
class FaultInjection:
    delay_percent: float = 0.0
    delay_s: float = 0.0
    abort_percent: float = 0.0
    abort_status: int = 0

    @property
    def injects_anything(self) -> bool:
        return self.delay_percent > 0 or self.abort_percent > 0


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    name: str = ""
    retries: RetryPolicy | None = None
    retry_budget: RetryBudget = DEFAULT_RETRY_BUDGET
    circuit_breaker: CircuitBreaker | None = None
    outlier_detection: OutlierDetection | None = None
    # Empty: every endpoint gets traffic. Otherwise only endpoints labelled version=<one of these>.
    split: tuple[SplitEntry, ...] = ()
    fault: FaultInjection | None = None

    @property
    def needs_policy_path(self) -> bool:
        """Whether requests need per-request work beyond picking an endpoint (a split alone does not)."""
        retries = self.retries
        breaker = self.circuit_breaker
        outliers = self.outlier_detection
        fault = self.fault
        return (
            (retries is not None and (retries.attempts > 0 or retries.per_try_timeout_s is not None))
            or (breaker is not None and breaker.limits_anything)
            or (outliers is not None and outliers.ejects_anything)
            or (fault is not None and fault.injects_anything)
        )


@dataclass(frozen=True, slots=True)
class Destination:
    service: str
    namespace: str
    load_balancer: LoadBalancerKind
    endpoints: tuple[Endpoint, ...]
    request_timeout_s: float | None = None
    # Lowercase; set only with CONSISTENT_HASH.
    hash_header: str = ""
    traffic_policy: TrafficPolicy | None = None

    @property
    def key(self) -> str:
        return f"{self.service}.{self.namespace}"

    @property
    def split(self) -> tuple[SplitEntry, ...]:
        policy = self.traffic_policy
        return policy.split if policy is not None else ()

    @property
    def policy_path(self) -> bool:
        """Whether requests to this destination take the policy path (retries, limits, faults, hashing
        on a header) rather than the fast path (and the native relay)."""
        if self.load_balancer is LoadBalancerKind.CONSISTENT_HASH:
            return True
        policy = self.traffic_policy
        return policy is not None and policy.needs_policy_path


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Immutable: a new snapshot replaces the whole table in one assignment."""

    version: int
    destinations: Mapping[str, Destination]
    # The approved policy version the snapshot carried (0: none yet); for logs and status.
    policy_version: int = 0
    # Who may call this agent's own service; kept here for the inbound listener's authorization.
    inbound: InboundPolicy = EMPTY_INBOUND
    # Every root the mesh trusts (PEM), the signing root first; empty before any snapshot carried one.
    trust_bundle: bytes = b""

    def lookup(self, host: str, own_namespace: str) -> Destination | None:
        """The destination a ``Host`` header names: ``svc``, ``svc.ns`` or ``svc.ns.svc.<domain>``, any port."""
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        parts = name.lower().rstrip(".").split(".")
        if len(parts) == 1:
            return self.destinations.get(f"{parts[0]}.{own_namespace}")
        if len(parts) == 2 or (len(parts) > 3 and parts[2] == "svc"):
            return self.destinations.get(f"{parts[0]}.{parts[1]}")
        return None


EMPTY_TABLE = RoutingTable(version=0, destinations={})
