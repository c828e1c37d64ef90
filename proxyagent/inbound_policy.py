"""Who may call this agent's own service: the snapshot's ``InboundPolicy``, validated and frozen.

The agent keeps it in its routing table; the inbound listener's gate
(``proxyagent.authz.gate``) enforces it. Validation follows the control
plane's grammar for policy specs, so a snapshot an agent refuses is one the
control plane should never have built. Key sets of end-user token issuers are
parsed here too: a snapshot with an unusable one is refused whole, never
applied without the issuer.
"""

from __future__ import annotations

import re
from collections.abc import Sized
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from proxyagent.authz.tokens import JwksError, JwtIssuer, parse_jwks
from proxyagent.protocol.v1 import snapshot_pb2

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CLAIM = re.compile(r"^[A-Za-z0-9_.:-]+$")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAMESPACE = re.compile(rf"^(?:{_DNS_LABEL}|\*)$")
_SERVICE = re.compile(rf"^(?:{_DNS_LABEL})?$")
_PRINCIPAL = re.compile(rf"^(?:spiffe://[a-z0-9._-]+/ns/{_DNS_LABEL}/sa/[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?|\*)$")
_REQUEST_PRINCIPAL = re.compile(r"^(?:[!-~]+/[!-~]+|\*)$")
_POLICY_ID = re.compile(rf"^{_DNS_LABEL}/{_DNS_LABEL}$")
# Bounds on list sizes: a snapshot is held in memory by every agent and evaluated per request.
_MAX_POLICIES = 1000
_MAX_RULES = 1000
_MAX_ENTRIES = 1000


class PeerAuthenticationMode(StrEnum):
    PERMISSIVE = "permissive"
    STRICT = "strict"


class AuthorizationDefault(StrEnum):
    ALLOW_ALL = "allow_all"
    DENY_ALL = "deny_all"


class AuthorizationAction(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class PathMatchKind(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class PathMatch:
    kind: PathMatchKind
    path: str


@dataclass(frozen=True, slots=True)
class AuthorizationSource:
    """Empty tuples match anyone; entries of one tuple are OR-ed, the tuples AND-ed."""

    principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationOperation:
    methods: tuple[str, ...] = ()
    paths: tuple[PathMatch, ...] = ()
    ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HeaderCondition:
    """A request header (lowercase ``header``) or, with ``claim``, a claim of the verified JWT, holding one of
    ``values``."""

    header: str
    values: tuple[str, ...]
    claim: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizationRule:
    source: AuthorizationSource
    operation: AuthorizationOperation
    when: tuple[HeaderCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    # "<namespace>/<name>": what a denial names.
    id: str
    # Empty: the whole namespace.
    service: str
    action: AuthorizationAction
    rules: tuple[AuthorizationRule, ...]


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    peer_authentication: PeerAuthenticationMode = PeerAuthenticationMode.PERMISSIVE
    authorization_default: AuthorizationDefault = AuthorizationDefault.ALLOW_ALL
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    # Issuers of end-user tokens (RequestAuthentication), each with the key set the control plane pushed.
    request_authentications: tuple[JwtIssuer, ...] = ()


EMPTY_INBOUND = InboundPolicy()

_PEER_MODES = {
    snapshot_pb2.PEER_AUTHENTICATION_MODE_PERMISSIVE: PeerAuthenticationMode.PERMISSIVE,
    snapshot_pb2.PEER_AUTHENTICATION_MODE_STRICT: PeerAuthenticationMode.STRICT,
}
_DEFAULTS = {
    snapshot_pb2.AUTHORIZATION_DEFAULT_ALLOW_ALL: AuthorizationDefault.ALLOW_ALL,
    snapshot_pb2.AUTHORIZATION_DEFAULT_DENY_ALL: AuthorizationDefault.DENY_ALL,
}
_ACTIONS = {
    snapshot_pb2.AUTHORIZATION_ACTION_ALLOW: AuthorizationAction.ALLOW,
    snapshot_pb2.AUTHORIZATION_ACTION_DENY: AuthorizationAction.DENY,
}


class InboundPolicyError(ValueError):
    """The message says which field is wrong and why."""


def _bounded(where: str, values: Sized, limit: int = _MAX_ENTRIES) -> None:
    if len(values) > limit:
        raise InboundPolicyError(f"{where}: more than {limit} entries")


def _strings(where: str, values: list[str], pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    _bounded(where, values)
    for index, value in enumerate(values):
        if not pattern.match(value):
            raise InboundPolicyError(f"{where}[{index}]: {value!r} is not {what}")
    return tuple(values)


def _path(where: str, proto: snapshot_pb2.PathMatch) -> PathMatch:
    kind = proto.WhichOneof("kind")
    if kind is None:
        raise InboundPolicyError(f"{where}: give an exact path or a prefix")
    path: str = getattr(proto, kind)
    if not path.startswith("/"):
        raise InboundPolicyError(f"{where}: {path!r} must start with '/'")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise InboundPolicyError(f"{where}: the path holds control characters")
    # A dot-dot segment never matches a normalized request path: a rule with one is a bypass waiting to happen.
    if any(unquote(segment) == ".." for segment in path.split("/")):
        raise InboundPolicyError(f"{where}: {path!r} holds a '..' segment")
    return PathMatch(PathMatchKind(kind), path)


def _rule(where: str, proto: snapshot_pb2.AuthorizationRule) -> AuthorizationRule:
    at = f"{where}.source"
    source = AuthorizationSource(
        principals=_strings(f"{at}.principals", list(proto.source.principals), _PRINCIPAL, "a SPIFFE id or '*'"),
        namespaces=_strings(f"{at}.namespaces", list(proto.source.namespaces), _NAMESPACE, "a namespace or '*'"),
        request_principals=_strings(
            f"{at}.request_principals", list(proto.source.request_principals), _REQUEST_PRINCIPAL, "'<iss>/<sub>'"
        ),
    )
    operation = proto.operation
    _bounded(f"{where}.operation.paths", operation.paths)
    _bounded(f"{where}.operation.ports", operation.ports)
    for index, port in enumerate(operation.ports):
        if not 1 <= port <= 65535:
            raise InboundPolicyError(f"{where}.operation.ports[{index}]: port {port} is out of range")
    when = []
    _bounded(f"{where}.when", proto.when)
    for index, condition in enumerate(proto.when):
        at = f"{where}.when[{index}]"
        if bool(condition.header) == bool(condition.claim):
            raise InboundPolicyError(f"{at}: give exactly one of a header or a claim")
        if condition.claim:
            if not _CLAIM.match(condition.claim):
                raise InboundPolicyError(f"{at}: claim {condition.claim!r} is not a claim name")
        elif not _TOKEN.match(condition.header) or condition.header != condition.header.lower():
            raise InboundPolicyError(f"{at}: header {condition.header!r} is not a lowercase HTTP token")
        if not condition.values:
            raise InboundPolicyError(f"{at}: a condition needs at least one value")
        _bounded(f"{at}.values", condition.values)
        when.append(HeaderCondition(condition.header, tuple(condition.values), condition.claim))
    return AuthorizationRule(
        source=source,
        operation=AuthorizationOperation(
            methods=_strings(f"{where}.operation.methods", list(operation.methods), _TOKEN, "an HTTP method"),
            paths=tuple(_path(f"{where}.operation.paths[{i}]", path) for i, path in enumerate(operation.paths)),
            ports=tuple(operation.ports),
        ),
        when=tuple(when),
    )


def _policy(where: str, proto: snapshot_pb2.AuthorizationPolicy) -> AuthorizationPolicy:
    if not _POLICY_ID.match(proto.id):
        raise InboundPolicyError(f"{where}: id {proto.id!r} is not '<namespace>/<name>'")
    if not _SERVICE.match(proto.service):
        raise InboundPolicyError(f"{where}: service {proto.service!r} is not a DNS label")
    if proto.action not in _ACTIONS:
        raise InboundPolicyError(f"{where}: unknown action {proto.action}")
    _bounded(f"{where}.rules", proto.rules, _MAX_RULES)
    return AuthorizationPolicy(
        id=proto.id,
        service=proto.service,
        action=_ACTIONS[proto.action],
        rules=tuple(_rule(f"{where}.rules[{i}]", rule) for i, rule in enumerate(proto.rules)),
    )


def _issuer(where: str, proto: snapshot_pb2.RequestAuthentication) -> JwtIssuer:
    if not _POLICY_ID.match(proto.id):
        raise InboundPolicyError(f"{where}: id {proto.id!r} is not '<namespace>/<name>'")
    if not _SERVICE.match(proto.service):
        raise InboundPolicyError(f"{where}: service {proto.service!r} is not a DNS label")
    if not proto.issuer:
        raise InboundPolicyError(f"{where}: the issuer is empty")
    _bounded(f"{where}.audiences", proto.audiences)
    try:
        keys = parse_jwks(f"{where}.jwks_json", proto.jwks_json)
    except JwksError as exc:
        raise InboundPolicyError(str(exc)) from None
    return JwtIssuer(proto.id, proto.service, proto.issuer, tuple(proto.audiences), keys)


def inbound_policy_from_proto(proto: snapshot_pb2.InboundPolicy) -> InboundPolicy:
    """Raises ``InboundPolicyError`` naming the first bad field."""
    if proto.peer_authentication not in _PEER_MODES:
        raise InboundPolicyError(f"inbound: unknown peer authentication mode {proto.peer_authentication}")
    if proto.authorization_default not in _DEFAULTS:
        raise InboundPolicyError(f"inbound: unknown authorization default {proto.authorization_default}")
    _bounded("inbound.authorization_policies", proto.authorization_policies, _MAX_POLICIES)
    policies = tuple(
        _policy(f"inbound.authorization_policies[{i}]", policy) for i, policy in enumerate(proto.authorization_policies)
    )
    ids = [policy.id for policy in policies]
    if len(set(ids)) != len(ids):
        raise InboundPolicyError("inbound.authorization_policies: a policy id is listed twice")
    _bounded("inbound.request_authentications", proto.request_authentications, _MAX_POLICIES)
    issuers = tuple(
        _issuer(f"inbound.request_authentications[{i}]", message)
        for i, message in enumerate(proto.request_authentications)
    )
    return InboundPolicy(
        peer_authentication=_PEER_MODES[proto.peer_authentication],
        authorization_default=_DEFAULTS[proto.authorization_default],
        authorization_policies=policies,
        request_authentications=issuers,
    )
