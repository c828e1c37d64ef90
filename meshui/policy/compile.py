"""Turning validated policy specs into the snapshot messages agents enforce.

Defaults the agents need but authors may leave out are filled in here, in one
place, so the API stores what the author wrote and the wire carries what runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from meshui.policy.models import Policy, PolicyKind
from proxyagent.protocol.v1 import snapshot_pb2

# Linkerd's default retry budget: retries add at most a fifth to the load, and ten a
# second are always allowed so a quiet service can still retry.
DEFAULT_RETRY_BUDGET = {"percent": 20.0, "min_per_second": 10}
# Envoy's outlier-detection defaults, for the fields an author leaves out.
DEFAULT_OUTLIER_DETECTION = {
    "consecutive_5xx": 5,
    "consecutive_gateway_errors": 0,
    "interval_ms": 10_000,
    "base_ejection_ms": 30_000,
    "max_ejection_percent": 10,
}

LOAD_BALANCERS = {
    "round_robin": snapshot_pb2.LOAD_BALANCER_ROUND_ROBIN,
    "least_request": snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST,
    "random": snapshot_pb2.LOAD_BALANCER_RANDOM,
    "consistent_hash": snapshot_pb2.LOAD_BALANCER_CONSISTENT_HASH,
}


def _retries(spec: Mapping[str, Any]) -> snapshot_pb2.RetryPolicy:
    retry_on = set(spec["retry_on"])
    return snapshot_pb2.RetryPolicy(
        attempts=spec["attempts"],
        per_try_timeout_ms=spec.get("per_try_timeout_ms", 0),
        on_5xx="5xx" in retry_on,
        on_connect_failure="connect-failure" in retry_on,
        on_reset="reset" in retry_on,
        non_idempotent=spec.get("non_idempotent", False),
        max_replay_body_bytes=spec.get("max_replay_body_bytes", 65536),
    )


def _fault(spec: Mapping[str, Any]) -> snapshot_pb2.FaultInjection:
    delay = spec.get("delay") or {}
    abort = spec.get("abort") or {}
    return snapshot_pb2.FaultInjection(
        delay_percent=delay.get("percent", 0.0),
        delay_ms=delay.get("fixed_delay_ms", 0),
        abort_percent=abort.get("percent", 0.0),
        abort_status=abort.get("http_status", 0),
    )


def traffic_policy(name: str, spec: Mapping[str, Any]) -> snapshot_pb2.TrafficPolicy:
    message = snapshot_pb2.TrafficPolicy(name=name)
    if "retries" in spec:
        message.retries.CopyFrom(_retries(spec["retries"]))
        message.retry_budget.CopyFrom(snapshot_pb2.RetryBudget(**(spec.get("retry_budget") or DEFAULT_RETRY_BUDGET)))
    elif "retry_budget" in spec:
        message.retry_budget.CopyFrom(snapshot_pb2.RetryBudget(**spec["retry_budget"]))
    if "circuit_breaker" in spec:
        message.circuit_breaker.CopyFrom(snapshot_pb2.CircuitBreaker(**spec["circuit_breaker"]))
    if "outlier_detection" in spec:
        message.outlier_detection.CopyFrom(
            snapshot_pb2.OutlierDetection(**{**DEFAULT_OUTLIER_DETECTION, **spec["outlier_detection"]})
        )
    message.split.extend(
        snapshot_pb2.SplitEntry(version=e["version"], weight=e["weight"]) for e in spec.get("split", [])
    )
    if "fault" in spec:
        message.fault.CopyFrom(_fault(spec["fault"]))
    return message


def apply_traffic_policy(destination: snapshot_pb2.Destination, policy: Policy) -> None:
    """Set ``destination``'s balancing, timeout and resilience from its service's traffic policy."""
    spec = policy.spec
    balancer = spec.get("load_balancer")
    if balancer is not None:
        destination.load_balancer = LOAD_BALANCERS[balancer["policy"]]
        destination.hash_header = balancer.get("hash_header", "").lower()
    if "timeout_ms" in spec:
        destination.request_timeout_ms = spec["timeout_ms"]
    destination.traffic_policy.CopyFrom(traffic_policy(f"{policy.namespace.name}/{policy.name}", spec))


def _rule(spec: Mapping[str, Any]) -> snapshot_pb2.AuthorizationRule:
    source = spec.get("from") or {}
    operation = spec.get("to") or {}
    return snapshot_pb2.AuthorizationRule(
        source=snapshot_pb2.AuthorizationSource(
            principals=source.get("principals", []),
            namespaces=source.get("namespaces", []),
            request_principals=source.get("request_principals", []),
        ),
        operation=snapshot_pb2.AuthorizationOperation(
            methods=operation.get("methods", []),
            paths=[snapshot_pb2.PathMatch(**path) for path in operation.get("paths", [])],
            ports=operation.get("ports", []),
        ),
        when=[
            snapshot_pb2.HeaderCondition(
                header=condition.get("header", "").lower(), claim=condition.get("claim", ""), values=condition["values"]
            )
            for condition in spec.get("when", [])
        ],
    )


def authorization_policy(policy: Policy) -> snapshot_pb2.AuthorizationPolicy:
    action = snapshot_pb2.AUTHORIZATION_ACTION_DENY if policy.spec["action"] == "DENY" else 0
    return snapshot_pb2.AuthorizationPolicy(
        id=f"{policy.namespace.name}/{policy.name}",
        service=policy.service,
        action=action,  # type: ignore[arg-type]
        rules=[_rule(rule) for rule in policy.spec.get("rules", [])],
    )


def _request_authentication(policy: Policy, jwks: Mapping[str, Any]) -> snapshot_pb2.RequestAuthentication | None:
    """``None`` until the key set is known: an issuer without keys is not trusted (the agent answers 401)."""
    spec = policy.spec
    document = spec["jwks"] if "jwks" in spec else jwks.get(spec["jwks_uri"])
    if document is None:
        return None
    return snapshot_pb2.RequestAuthentication(
        id=f"{policy.namespace.name}/{policy.name}",
        service=policy.service,
        issuer=spec["issuer"],
        audiences=spec.get("audiences", []),
        jwks_json=json.dumps(document, sort_keys=True),
    )


def inbound_policy(
    policies: Iterable[Policy], service: str, jwks: Mapping[str, Any] | None = None
) -> snapshot_pb2.InboundPolicy:
    """The inbound policy of ``service``'s agents from its namespace's ``policies``; ``jwks`` maps key-set
    URIs to the documents the control plane fetched."""
    inbound = snapshot_pb2.InboundPolicy()
    for policy in sorted(policies, key=lambda p: (p.kind, p.name)):
        if policy.kind == PolicyKind.PEER_AUTHENTICATION and policy.spec["mode"] == "STRICT":
            inbound.peer_authentication = snapshot_pb2.PEER_AUTHENTICATION_MODE_STRICT
        elif policy.kind == PolicyKind.AUTHORIZATION_DEFAULT and policy.spec["default"] == "deny-all":
            inbound.authorization_default = snapshot_pb2.AUTHORIZATION_DEFAULT_DENY_ALL
        elif policy.kind == PolicyKind.AUTHORIZATION and policy.service in ("", service):
            inbound.authorization_policies.append(authorization_policy(policy))
        elif policy.kind == PolicyKind.REQUEST_AUTHENTICATION and policy.service in ("", service):
            message = _request_authentication(policy, jwks or {})
            if message is not None:
                inbound.request_authentications.append(message)
    return inbound
