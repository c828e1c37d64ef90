"""The agent's view of where it may send requests, built from a validated snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class LoadBalancerKind(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    workload: str
    weight: int = 1
    # Not part of identity or hash: two endpoints at one address are one endpoint.
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Destination:
    service: str
    namespace: str
    load_balancer: LoadBalancerKind
    endpoints: tuple[Endpoint, ...]
    request_timeout_s: float | None = None

    @property
    def key(self) -> str:
        return f"{self.service}.{self.namespace}"


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Immutable: a new snapshot replaces the whole table in one assignment."""

    version: int
    destinations: Mapping[str, Destination]

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
