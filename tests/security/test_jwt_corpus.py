"""End-user tokens from the corpus, against the agent's verifier: forged, expired, misdirected, alg games."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxyagent.authz.tokens import JwtIssuer, TokenRejected, bearer_token, parse_jwks, verify
from tests.security import corpus

ISSUER = "https://id.example.com"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
JWK = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k1", "alg": "ES256"}
TRUSTED = JwtIssuer("shop/users", "reviews", ISSUER, ("reviews",), parse_jwks("test", json.dumps({"keys": [JWK]})))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def build(case: dict[str, Any]) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": case.get("iss", ISSUER),
        "sub": "alice",
        "aud": case.get("aud", ["reviews"]),
        "exp": now + case.get("exp_offset", 600),
        "iat": now,
    }
    if "nbf_offset" in case:
        claims["nbf"] = now + case["nbf_offset"]
    for name in case.get("drop", []):
        claims.pop(name)
    make = case["make"]
    kid = case.get("kid", "k1")
    if make in ("valid", "tampered"):
        token = jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": kid})
        if make == "tampered":
            header, _, signature = token.split(".")
            token = f"{header}.{_b64(json.dumps({**claims, 'sub': 'root'}).encode())}.{signature}"
        return token
    if make == "foreign_key":
        return jwt.encode(claims, OTHER_KEY, algorithm="ES256")
    if make == "foreign_key_same_kid":
        return jwt.encode(claims, OTHER_KEY, algorithm="ES256", headers={"kid": "k1"})
    if make == "alg_none":
        return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."
    if make == "hs256_public_key":
        secret = KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"
    if make == "garbage":
        return "not.a.jwt"
    if make == "huge":
        return jwt.encode({**claims, "pad": "x" * 20_000}, KEY, algorithm="ES256", headers={"kid": "k1"})
    raise AssertionError(f"unknown token recipe {make!r}")


@pytest.mark.parametrize("case", corpus.load()["jwts"], ids=lambda case: case["name"])
def test_jwt_case(case: dict[str, Any]) -> None:
    try:
        token = bearer_token([f"Bearer {build(case)}"])
        assert token is not None
        verified = verify(token, [TRUSTED])
    except TokenRejected:
        outcome = "refused"
    else:
        outcome = "verified"
        assert verified.principal == f"{ISSUER}/alice"
    corpus.record("jwt", case["name"], outcome == "verified" and case["expect"] != "verified")
    assert outcome == case["expect"]


def test_bearer_headers() -> None:
    assert bearer_token([]) is None
    assert bearer_token(["Basic dXNlcjpwYXNz"]) is None
    assert bearer_token(["bearer abc"]) == "abc"
    with pytest.raises(TokenRejected, match="more than one"):
        bearer_token(["Bearer a", "Bearer b"])
    with pytest.raises(TokenRejected, match="empty"):
        bearer_token(["Bearer "])
