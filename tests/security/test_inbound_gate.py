"""The agent's inbound gate on policies compiled the way production compiles them: end-user tokens, claims, refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meshui.catalog.models import Namespace
from meshui.policy.compile import inbound_policy
from meshui.policy.models import Policy, PolicyKind
from meshui.policy.validation import validate_authorization_policy, validate_request_authentication
from proxyagent.authz.gate import InboundGate
from proxyagent.config_store import SnapshotRejected, routing_table_from_snapshot
from proxyagent.inbound_policy import InboundPolicy
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.protocol.v1 import snapshot_pb2

ISSUER = "https://id.example.com"
KEY = ec.generate_private_key(ec.SECP256R1())
JWKS = {"keys": [{**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k1", "alg": "ES256"}]}
WEB = "spiffe://cluster.local/ns/shop/sa/web"


def compiled(*policies: tuple[PolicyKind, str, str, dict[str, Any]]) -> InboundPolicy:
    """Policies of namespace ``shop`` (kind, name, service, spec), validated, compiled and parsed by an agent."""
    namespace = Namespace(name="shop")
    rows = []
    for kind, name, service, spec in policies:
        if kind == PolicyKind.AUTHORIZATION:
            spec, _ = validate_authorization_policy(spec)
        elif kind == PolicyKind.REQUEST_AUTHENTICATION:
            spec, _ = validate_request_authentication(spec)
        rows.append(Policy(kind=kind, namespace=namespace, name=name, service=service, spec=spec))
    snapshot = snapshot_pb2.Snapshot(version=1, inbound=inbound_policy(rows, "reviews"))
    return routing_table_from_snapshot(snapshot).inbound


def token(**claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "reviews", "exp": now + 600, **claims}
    return str(jwt.encode(body, KEY, algorithm="ES256", headers={"kid": "k1"}))


def bearer(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {value}".encode())]


USERS = (
    PolicyKind.REQUEST_AUTHENTICATION,
    "users",
    "reviews",
    {"issuer": ISSUER, "jwks": JWKS, "audiences": ["reviews"]},
)
DENY_ALL = (PolicyKind.AUTHORIZATION_DEFAULT, "default", "", {"default": "deny-all"})


def refusal(gate: InboundGate, headers: list[tuple[bytes, bytes]], principal: str | None = WEB) -> MeshError:
    with pytest.raises(MeshError) as caught:
        gate.admit(b"GET", b"/api/orders", headers, principal)
    return caught.value


def test_a_gate_with_nothing_to_enforce_is_open_and_one_with_anything_is_not() -> None:
    assert InboundGate(compiled(), "reviews", "shop", 9080).open
    assert not InboundGate(compiled(DENY_ALL), "reviews", "shop", 9080).open
    assert not InboundGate(compiled(USERS), "reviews", "shop", 9080).open
    # Policies of another service of the namespace leave this one's gate open.
    other = (PolicyKind.AUTHORIZATION, "only-web", "ratings", {"action": "ALLOW", "rules": [{"from": {}}]})
    assert InboundGate(compiled(other), "reviews", "shop", 9080).open


def test_individuals_are_allowed_by_the_principal_and_claims_of_a_verified_token() -> None:
    admins = (
        PolicyKind.AUTHORIZATION,
        "admins",
        "reviews",
        {
            "action": "ALLOW",
            "rules": [
                {
                    "from": {"request_principals": [f"{ISSUER}/alice"]},
                    "when": [{"claim": "groups", "values": ["admins"]}, {"claim": "scope", "values": ["orders:read"]}],
                }
            ],
        },
    )
    gate = InboundGate(compiled(USERS, DENY_ALL, admins), "reviews", "shop", 9080)
    good = token(groups=["staff", "admins"], scope="profile orders:read")
    admission = gate.admit(b"GET", b"/api//orders/./1?x=1", bearer(good), WEB)
    assert (admission.target, admission.policy_id, admission.request_principal) == (
        b"/api/orders/1?x=1",
        "shop/admins",
        f"{ISSUER}/alice",
    )
    # A verified token whose claims miss the rule, or no token at all: denied by the namespace default.
    for headers in (bearer(token(groups=["staff"], scope="orders:read")), []):
        denied = refusal(gate, headers)
        assert (denied.code, denied.status, denied.policy) == (MeshErrorCode.DENIED, 403, "shop/default")
    # A token that does not verify is a 401, whatever the policies say.
    for bad in (token(aud="billing"), token(exp=int(time.time()) - 3600), good[:-4] + "AAAA"):
        unauthenticated = refusal(gate, bearer(bad))
        assert (unauthenticated.code, unauthenticated.status) == (MeshErrorCode.UNAUTHENTICATED, 401)


def test_refusals_name_the_policy_but_never_its_rules() -> None:
    no_deletes = (
        PolicyKind.AUTHORIZATION,
        "no-deletes",
        "",
        {"action": "DENY", "rules": [{"to": {"methods": ["DELETE"], "paths": [{"prefix": "/api/secret-admin"}]}}]},
    )
    gate = InboundGate(compiled(no_deletes), "reviews", "shop", 9080)
    with pytest.raises(MeshError) as caught:
        gate.admit(b"DELETE", b"/api/secret-admin/1", [], WEB)
    response = caught.value.response(keep_alive=True)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"x-mesh-error: denied\r\n" in head
    assert b"x-mesh-policy: shop/no-deletes\r\n" in head
    assert json.loads(body) == {
        "mesh_error": "denied",
        "detail": "the callee's policy shop/no-deletes refused this request",
        "policy": "shop/no-deletes",
    }
    assert b"secret-admin" not in body
    unauthenticated = MeshError(MeshErrorCode.UNAUTHENTICATED, "the token has expired").response(keep_alive=False)
    assert unauthenticated.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'www-authenticate: Bearer error="invalid_token"\r\n' in unauthenticated


def test_a_lowercase_method_or_a_bad_path_is_a_400_before_any_policy() -> None:
    gate = InboundGate(compiled(DENY_ALL), "reviews", "shop", 9080)
    for method, target in [(b"delete", b"/api"), (b"GET", b"/api/%2F..%2Fadmin"), (b"GET", b"/a\x00b")]:
        with pytest.raises(MeshError) as caught:
            gate.admit(method, target, [], WEB)
        assert caught.value.code is MeshErrorCode.BAD_REQUEST


def test_a_snapshot_with_an_unusable_key_set_is_refused_whole() -> None:
    snapshot = snapshot_pb2.Snapshot(version=2)
    snapshot.inbound.request_authentications.append(
        snapshot_pb2.RequestAuthentication(
            id="shop/users", issuer=ISSUER, jwks_json=json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
        )
    )
    with pytest.raises(SnapshotRejected, match="request_authentications"):
        routing_table_from_snapshot(snapshot)
    bad_claim = snapshot_pb2.Snapshot(version=3)
    rule = bad_claim.inbound.authorization_policies.add(id="shop/x").rules.add()
    rule.when.add(header="x-team", claim="groups", values=["a"])
    with pytest.raises(SnapshotRejected, match="exactly one of a header or a claim"):
        routing_table_from_snapshot(bad_claim)
