"""End-user JWTs: verified against the issuers' key sets the control plane pushed.

A request's token (``Authorization: Bearer ...``) either verifies, giving the request
principal ``<iss>/<sub>`` and its claims to authorization, or is refused with a 401:
never half-trusted. What must hold:

- the ``alg`` is an asymmetric one (RS*, PS*, ES*, EdDSA): ``none`` and HMAC are refused,
  so a token cannot be signed with a public key taken for a shared secret;
- ``iss`` names an issuer configured for this service, and the signature verifies with
  one of that issuer's keys (by ``kid`` when the token names one);
- ``exp`` and ``sub`` are present, ``exp``/``nbf`` hold (30 s of leeway for clocks);
- ``aud`` holds one of the issuer's audiences, when it lists any.

Key sets come only from snapshots: an agent never fetches a URL a token or a policy names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxyagent.lazy_imports import lazy_module

if TYPE_CHECKING:
    import jwt
    from jwt import PyJWK
else:
    # Loaded when first used (proxyagent.lazy_imports): only services that trust an issuer verify tokens.
    jwt = lazy_module("jwt")

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LEEWAY_SECONDS = 30
# A bearer token larger than this is refused unread: verification cost must stay bounded.
MAX_TOKEN_BYTES = 8192


class TokenRejected(ValueError):  # noqa: N818 - the agent's answer is literally "rejected"
    """Why a token was refused; safe to return in a 401 detail (it says nothing about keys)."""


class JwksError(ValueError):
    """A key set in a snapshot is unusable; the snapshot is rejected whole."""


@dataclass(frozen=True, slots=True)
class JwtIssuer:
    policy_id: str
    service: str  # empty: the whole namespace
    issuer: str
    audiences: tuple[str, ...]
    keys: tuple[PyJWK, ...]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: str  # "<iss>/<sub>"
    claims: Mapping[str, Any]


def parse_jwks(where: str, jwks_json: str) -> tuple[PyJWK, ...]:
    """The asymmetric keys of a JWKS document, or ``JwksError``."""
    try:
        document = json.loads(jwks_json)
        keys = jwt.PyJWKSet.from_dict(document).keys
    except (ValueError, TypeError, KeyError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
        raise JwksError(f"{where}: not a usable JSON Web Key Set ({exc})") from None
    usable = tuple(key for key in keys if key.algorithm_name in ASYMMETRIC_ALGORITHMS)
    if not usable:
        raise JwksError(f"{where}: the key set holds no asymmetric signing key")
    return usable


def bearer_token(values: Sequence[str]) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header; ``TokenRejected`` if malformed or repeated."""
    if not values:
        return None
    if len(values) > 1:
        raise TokenRejected("more than one Authorization header")
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("the bearer token is empty or too large")
    return token


def _candidate_keys(issuer: JwtIssuer, kid: str | None, algorithm: str) -> list[PyJWK]:
    keys = [key for key in issuer.keys if key.algorithm_name == algorithm]
    if kid is not None:
        keys = [key for key in keys if key.key_id == kid]
    return keys


def verify(token: str, issuers: Sequence[JwtIssuer]) -> VerifiedToken:
    """The verified token, or ``TokenRejected`` with the reason."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRejected("the bearer token is not a well-formed JWT") from None
    algorithm = header.get("alg")
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise TokenRejected(f"tokens signed with {algorithm!r} are not accepted")
    claimed_issuer = unverified.get("iss")
    matching = [issuer for issuer in issuers if issuer.issuer == claimed_issuer]
    if not matching:
        raise TokenRejected("the token's issuer is not trusted here")
    kid = header.get("kid")
    for issuer in matching:
        for key in _candidate_keys(issuer, kid if isinstance(kid, str) else None, algorithm):
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=[algorithm],
                    issuer=issuer.issuer,
                    audience=list(issuer.audiences) or None,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "iss", "sub"], "verify_aud": bool(issuer.audiences)},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise TokenRejected("the token has expired") from None
            except jwt.ImmatureSignatureError:
                raise TokenRejected("the token is not valid yet") from None
            except jwt.InvalidAudienceError:
                raise TokenRejected("the token is not for this audience") from None
            except jwt.MissingRequiredClaimError as exc:
                raise TokenRejected(f"the token lacks the {exc.claim!r} claim") from None
            except jwt.PyJWTError:
                raise TokenRejected("the token does not verify") from None
            return VerifiedToken(f"{claims['iss']}/{claims['sub']}", claims)
    raise TokenRejected("the token's signature does not verify with the issuer's keys")
