"""The inbound gate: whether one request may reach this agent's application, and at which path.

Built once per routing table for the agent's own service. A request passes the
gate in this order, and the first refusal answers it:

1. With anything to enforce (an authorization policy for this service, a
   deny-all default, or an issuer of end-user tokens), the method must be an
   upper-case token and the target must normalize (``paths.normalize_target``):
   otherwise 400 ``bad_request``. The normalized target is what is forwarded,
   so the path authorized is the path the application sees.
2. A bearer token, when the request carries one and this service trusts an
   issuer, must verify (``tokens.verify``): otherwise 401 ``unauthenticated``.
   A token for a service that trusts no issuer is left to the application.
3. Authorization (``engine.authorize``) on the caller's verified SPIFFE id, the
   token's principal and claims, the method, the normalized path, the
   application's port and the headers: a refusal is 403 ``denied`` naming the
   policy that decided.

A gate with nothing to enforce is ``open``: the request path skips it without
parsing anything, so a mesh without policies pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxyagent.authz.engine import RequestFacts, authorize
from proxyagent.authz.paths import PathRejected, SlashMode, check_method, normalize_target
from proxyagent.authz.tokens import JwtIssuer, TokenRejected, VerifiedToken, bearer_token, verify
from proxyagent.http.headers import Headers
from proxyagent.inbound_policy import AuthorizationDefault, InboundPolicy
from proxyagent.mesh_errors import MeshError, MeshErrorCode

_AUTHORIZATION = "authorization"


@dataclass(frozen=True, slots=True)
class Admission:
    """A request the gate let through."""

    # The normalized origin-form target to forward.
    target: bytes
    # The ALLOW policy that matched; None when the namespace default allowed it.
    policy_id: str | None
    # "<issuer>/<subject>" of the verified bearer token; None without one.
    request_principal: str | None


def _header_map(headers: Headers) -> Mapping[str, Sequence[str]]:
    """Lowercase header names to their values, in order (latin-1: HTTP field values are bytes)."""
    mapped: dict[str, list[str]] = {}
    for name, value in headers:
        mapped.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1").strip())
    return mapped


class InboundGate:
    """The inbound policy of ``service`` (in ``namespace``), for requests to its application on ``app_port``."""

    __slots__ = ("_app_port", "_issuers", "_namespace", "_policy", "_service", "_slash_mode", "open")

    def __init__(
        self,
        policy: InboundPolicy,
        service: str,
        namespace: str,
        app_port: int,
        slash_mode: SlashMode = SlashMode.STRICT,
    ) -> None:
        self._policy = policy
        self._service = service
        self._namespace = namespace
        self._app_port = app_port
        self._slash_mode = slash_mode
        self._issuers: tuple[JwtIssuer, ...] = tuple(
            issuer for issuer in policy.request_authentications if issuer.service in ("", service)
        )
        enforcing = policy.authorization_default is AuthorizationDefault.DENY_ALL or any(
            rule_set.service in ("", service) for rule_set in policy.authorization_policies
        )
        self.open = not enforcing and not self._issuers

    def admit(self, method: bytes, target: bytes, headers: Headers, principal: str | None) -> Admission:
        """The admission of one request, or ``MeshError`` (400 ``bad_request``, 401 ``unauthenticated``, 403
        ``denied``). ``principal`` is the caller's verified SPIFFE id, None for a plaintext caller."""
        try:
            method_name = check_method(method.decode("latin-1"))
            normalized = normalize_target(target.decode("latin-1"), self._slash_mode)
        except (PathRejected, UnicodeDecodeError) as exc:
            raise MeshError(MeshErrorCode.BAD_REQUEST, str(exc)) from None
        header_map = _header_map(headers)
        token = self._verified_token(header_map.get(_AUTHORIZATION, ()))
        facts = RequestFacts(
            method=method_name,
            path=normalized.path,
            port=self._app_port,
            principal=principal or None,
            request_principal=token.principal if token is not None else None,
            headers=header_map,
            claims=token.claims if token is not None else None,
        )
        decision = authorize(self._policy, self._service, self._namespace, facts)
        if not decision.allowed:
            policy_id = decision.policy_id or f"{self._namespace}/default"
            raise MeshError(
                MeshErrorCode.DENIED, f"the callee's policy {policy_id} refused this request", policy=policy_id
            )
        return Admission(normalized.target.encode("latin-1"), decision.policy_id, facts.request_principal)

    def _verified_token(self, authorization: Sequence[str]) -> VerifiedToken | None:
        if not self._issuers:
            return None
        try:
            token = bearer_token(authorization)
            return None if token is None else verify(token, self._issuers)
        except TokenRejected as exc:
            raise MeshError(MeshErrorCode.UNAUTHENTICATED, str(exc)) from None
