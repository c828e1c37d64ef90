"""Loading the bad-input corpus (``cases.yaml``) and compiling its policy the way production does.

The policy goes through the control plane's compiler (``meshui.policy.compile``) into a
snapshot message, then through the agent's own parser (``config_store``), so the corpus
tests the chain a real policy travels, not a hand-built copy of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshui.catalog.models import Namespace
from meshui.policy.compile import inbound_policy
from meshui.policy.models import Policy, PolicyKind
from meshui.policy.validation import validate_authorization_policy
from proxyagent.config_store import routing_table_from_snapshot
from proxyagent.inbound_policy import InboundPolicy
from proxyagent.protocol.v1 import snapshot_pb2

CORPUS = Path(__file__).with_name("cases.yaml")
NAMESPACE = "shop"
SERVICE = "reviews"
APP_PORT = 9080

# Outcomes by category, across the whole run: the suite's summary prints them.
TRIED: Counter[str] = Counter()
GOT_THROUGH: list[str] = []


@dataclass(frozen=True)
class PathCase:
    name: str
    caller: str | None
    method: str
    target: str
    expect: str
    forwarded: str | None
    policy: str | None


@dataclass(frozen=True)
class CertificateCase:
    name: str
    issuer: str  # mesh, foreign, workload or none
    identity: str
    uris: tuple[str, ...] | None  # None: the identity's own
    issued_offset_s: float
    ttl_s: float
    target: str
    expect: str  # served or refused
    reason: str | None  # mesh_tls_refused_total's reason when refused


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    return data


def path_cases(*, agent: bool = False) -> list[PathCase]:
    """The path cases; with ``agent``, as a whole agent must answer them: a case's ``agent`` outcome, where it
    states one, replaces its outcome (the gate's)."""
    data = load()
    callers: dict[str, str] = data["callers"]
    cases = []
    for raw in data["paths"]:
        caller = raw.get("caller")
        outcome = raw["agent"] if agent and "agent" in raw else raw
        cases.append(
            PathCase(
                name=raw["name"],
                caller=callers[caller] if caller is not None else None,
                method=raw.get("method", "GET"),
                target=raw["target"],
                expect=outcome["expect"],
                forwarded=outcome.get("forwarded"),
                policy=outcome.get("policy"),
            )
        )
    return cases


def certificate_cases() -> list[CertificateCase]:
    data = load()
    cases = []
    for raw in data["certificates"]:
        uris = raw.get("uris")
        cases.append(
            CertificateCase(
                name=raw["name"],
                issuer=raw.get("issuer", "mesh"),
                identity=raw.get("identity", data["callers"]["web"]),
                uris=tuple(uris) if uris is not None else None,
                issued_offset_s=float(raw.get("issued_offset_s", 0)),
                ttl_s=float(raw.get("ttl_s", 3600)),
                target=raw.get("target", "/public/index.html"),
                expect=raw["expect"],
                reason=raw.get("reason"),
            )
        )
    return cases


def policy_message() -> snapshot_pb2.InboundPolicy:
    """The corpus's policy, validated as the API would and compiled as the control plane does: the snapshot's
    ``inbound`` message a control plane pushes to the service's agents."""
    spec = load()["policy"]
    namespace = Namespace(name=NAMESPACE)
    policies = [
        Policy(
            kind=PolicyKind.AUTHORIZATION_DEFAULT,
            namespace=namespace,
            name="default",
            spec={"default": spec["default"]},
        )
    ]
    for entry in spec["policies"]:
        body = {"action": entry["action"], "rules": entry["rules"]}
        validated, _ = validate_authorization_policy(body)
        policies.append(
            Policy(
                kind=PolicyKind.AUTHORIZATION,
                namespace=namespace,
                name=entry["id"].split("/", 1)[1],
                service="",
                spec=validated,
            )
        )
    return inbound_policy(policies, SERVICE)


def compiled_policy() -> InboundPolicy:
    """The corpus's policy, compiled (``policy_message``) and parsed as an agent would."""
    snapshot = snapshot_pb2.Snapshot(version=1, inbound=policy_message())
    return routing_table_from_snapshot(snapshot).inbound


def record(category: str, name: str, got_through: bool) -> None:
    TRIED[category] += 1
    if got_through:
        GOT_THROUGH.append(f"{category}: {name}")
