"""RequestAuthentication: validated specs, key sets fetched by the control plane, and what agents receive."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from meshui.catalog.models import Namespace, Service
from meshui.policy.jwks import do_refresh_jwks
from meshui.policy.models import ConfigVersion, JwksDocument, Policy, PolicyKind
from meshui.policy.validation import validate_authorization_policy, validate_request_authentication
from meshui.rollout.models import MeshVersion
from meshui.rollout.snapshots import build_snapshot
from tests.policy.flow import act, open_change

ISSUER = "https://id.example.com"


def ec_jwks(kid: str = "k1") -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "alg": "ES256", "use": "sig"}]}


def test_a_spec_names_exactly_one_source_of_keys() -> None:
    spec, _ = validate_request_authentication({"issuer": ISSUER, "jwks": ec_jwks(), "audiences": ["shop"]})
    assert spec["audiences"] == ["shop"]
    for bad, field in [
        ({"issuer": ISSUER}, "non_field_errors"),
        ({"issuer": ISSUER, "jwks": ec_jwks(), "jwks_uri": "https://id.example.com/jwks"}, "non_field_errors"),
        ({"issuer": ISSUER, "jwks_uri": "http://id.example.com/jwks"}, "jwks_uri"),
        ({"issuer": ISSUER, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]}}, "jwks"),
        ({"issuer": ISSUER, "jwks": {"nope": 1}}, "jwks"),
        ({"issuer": "has space", "jwks": ec_jwks()}, "issuer"),
    ]:
        with pytest.raises(ValidationError) as caught:
            validate_request_authentication(bad)
        assert field in caught.value.detail, (bad, caught.value.detail)


def test_claim_conditions_in_authorization_rules() -> None:
    spec, _ = validate_authorization_policy(
        {
            "action": "ALLOW",
            "rules": [{"from": {"request_principals": ["*"]}, "when": [{"claim": "groups", "values": ["admins"]}]}],
        }
    )
    assert spec["rules"][0]["when"] == [{"claim": "groups", "values": ["admins"]}]
    with pytest.raises(ValidationError):
        validate_authorization_policy(
            {"action": "ALLOW", "rules": [{"when": [{"claim": "groups", "header": "x", "values": ["a"]}]}]}
        )


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b"{}"
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server(settings: Any) -> Iterator[tuple[str, type[_JwksHandler]]]:
    settings.MESH_JWKS_ALLOW_HTTP = True
    handler = type("Handler", (_JwksHandler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks", handler
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_key_sets_are_fetched_kept_on_errors_and_reach_the_service_agents(
    jwks_server: tuple[str, type[_JwksHandler]], cast: dict[str, Any], reviews: Service, alpha: Namespace
) -> None:
    uri, handler = jwks_server
    keys = ec_jwks()
    handler.body = json.dumps(keys).encode()
    change = open_change(
        cast["editor"],
        [
            {
                "operation": "create",
                "kind": "request_authentication",
                "name": "reviews-users",
                "service": "reviews",
                "spec": {"issuer": ISSUER, "jwks_uri": uri, "audiences": ["reviews"]},
            }
        ],
    )
    act(cast["editor"], change["id"], "submit")
    act(cast["approver"], change["id"], "approve")
    assert act(cast["editor"], change["id"], "apply").status_code == 200
    assert Policy.objects.filter(kind=PolicyKind.REQUEST_AUTHENTICATION).count() == 1
    assert ConfigVersion.objects.count() == 1
    # Until the key set is fetched, agents are given no keys for the issuer: its tokens are refused.
    assert list(build_snapshot(MeshVersion.current(), alpha.pk, "reviews").inbound.request_authentications) == []

    before = MeshVersion.current()
    assert do_refresh_jwks(timezone.now()) == 1
    assert MeshVersion.current() == before + 1
    [pushed] = build_snapshot(MeshVersion.current(), alpha.pk, "reviews").inbound.request_authentications
    assert (pushed.id, pushed.issuer, list(pushed.audiences)) == ("alpha/reviews-users", ISSUER, ["reviews"])
    assert json.loads(pushed.jwks_json) == keys
    assert list(build_snapshot(MeshVersion.current(), alpha.pk, "web").inbound.request_authentications) == []

    assert do_refresh_jwks(timezone.now()) == 0  # unchanged: no new version
    handler.status, handler.body = 500, b"oops"
    assert do_refresh_jwks(timezone.now()) == 0
    row = JwksDocument.objects.get()
    assert row.document == keys
    assert "not JSON" in row.last_error or "failed" in row.last_error
    handler.status, handler.body = 200, json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).encode()
    assert do_refresh_jwks(timezone.now()) == 0
    assert JwksDocument.objects.get().document == keys
