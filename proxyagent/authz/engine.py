"""Deciding one inbound request against the agent's authorization policies.

Order (ADR 015): a matching DENY policy denies; otherwise a matching ALLOW policy
allows; otherwise the namespace default decides. A policy matches when any of its
rules does; a rule matches when its source, its operation and every ``when``
condition do (an absent part matches anything).

- ``principals`` and ``namespaces`` match the caller's verified SPIFFE id; ``*`` means
  any authenticated caller, never a plaintext one. ``request_principals`` match the
  verified JWT's ``<issuer>/<subject>`` the same way.
- ``methods`` match case-sensitively (RFC 9110: ``get`` is not ``GET``).
- ``paths`` match the *normalized* path (``paths.normalize_target``): ``exact`` is
  string equality, ``prefix`` a string prefix.
- ``ports`` match the port of the application the request is for.
- ``when`` conditions match a header (by lowercase name) having one of the values, or a
  claim of the verified JWT doing so: a list claim when any element does, and the
  space-separated ``scope``/``scp`` string (OAuth 2.0) when any of its scopes does. A
  claim name is looked up as given, then as a dotted path into nested objects. Without
  a verified token no claim condition holds.

A denial names the policy that decided it (``<namespace>/<name>``, or
``<namespace>/default`` for the namespace default), never its rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxyagent.inbound_policy import (
    AuthorizationAction,
    AuthorizationDefault,
    AuthorizationOperation,
    AuthorizationPolicy,
    AuthorizationRule,
    AuthorizationSource,
    HeaderCondition,
    InboundPolicy,
    PathMatchKind,
)

ANY = "*"
_SPACE_SEPARATED_CLAIMS = frozenset({"scope", "scp"})


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What authorization may look at, all verified or normalized before it gets here."""

    method: str
    path: str
    port: int
    # The caller's SPIFFE id from its verified client certificate; None for plaintext.
    principal: str | None
    # "<issuer>/<subject>" of a verified JWT; None without one.
    request_principal: str | None = None
    # Lowercase header names to their values.
    headers: Mapping[str, Sequence[str]] | None = None
    # The verified JWT's claims; None without one.
    claims: Mapping[str, Any] | None = None

    @property
    def namespace(self) -> str | None:
        if self.principal is None:
            return None
        parts = self.principal.split("/")
        # spiffe://<td>/ns/<namespace>/sa/<sa>
        return parts[4] if len(parts) == 7 and parts[3] == "ns" else None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # The policy that decided; None when allowed by an allow-all default.
    policy_id: str | None


def _matches_identity(patterns: Sequence[str], value: str | None) -> bool:
    if value is None:
        return False
    return any(pattern in (ANY, value) for pattern in patterns)


def _source_matches(source: AuthorizationSource, facts: RequestFacts) -> bool:
    if source.principals and not _matches_identity(source.principals, facts.principal):
        return False
    if source.namespaces and not _matches_identity(source.namespaces, facts.namespace):
        return False
    return not source.request_principals or _matches_identity(source.request_principals, facts.request_principal)


def _operation_matches(operation: AuthorizationOperation, facts: RequestFacts) -> bool:
    if operation.methods and facts.method not in operation.methods:
        return False
    if operation.paths and not any(
        facts.path == match.path if match.kind is PathMatchKind.EXACT else facts.path.startswith(match.path)
        for match in operation.paths
    ):
        return False
    return not operation.ports or facts.port in operation.ports


def _claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    if name in claims:
        value: Any = claims[name]
    else:
        value = claims
        for part in name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return []
            value = value[part]
    if isinstance(value, str):
        return value.split() if name in _SPACE_SEPARATED_CLAIMS else [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    # Numbers and booleans compare as JSON writes them; objects never match.
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int | float):
        return [str(value)]
    return []


def _condition_holds(condition: HeaderCondition, facts: RequestFacts) -> bool:
    if condition.claim:
        if facts.claims is None:
            return False
        values: Sequence[str] = _claim_values(facts.claims, condition.claim)
    else:
        values = (facts.headers or {}).get(condition.header, ())
    return any(value in condition.values for value in values)


def _rule_matches(rule: AuthorizationRule, facts: RequestFacts) -> bool:
    if not _source_matches(rule.source, facts) or not _operation_matches(rule.operation, facts):
        return False
    return all(_condition_holds(condition, facts) for condition in rule.when)


def _first_match(policies: Sequence[AuthorizationPolicy], facts: RequestFacts) -> AuthorizationPolicy | None:
    for policy in policies:
        if any(_rule_matches(rule, facts) for rule in policy.rules):
            return policy
    return None


def authorize(policy: InboundPolicy, service: str, namespace: str, facts: RequestFacts) -> Decision:
    """The decision on a request to ``service`` (of ``namespace``) under ``policy``."""
    applying = [p for p in policy.authorization_policies if p.service in ("", service)]
    denied = _first_match([p for p in applying if p.action is AuthorizationAction.DENY], facts)
    if denied is not None:
        return Decision(False, denied.id)
    allowed = _first_match([p for p in applying if p.action is AuthorizationAction.ALLOW], facts)
    if allowed is not None:
        return Decision(True, allowed.id)
    if policy.authorization_default is AuthorizationDefault.DENY_ALL:
        return Decision(False, f"{namespace}/default")
    return Decision(True, None)
