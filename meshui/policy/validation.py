"""Validation of policy specs: errors as DRF field messages, doubts as coded warnings.

Every policy write passes through here before it can become part of a change request.
Errors make the spec unusable and come back as a field-level ``ValidationError`` (so an
API answers 400 naming the field). Warnings flag specs that are valid but probably not
what the author meant; they never block a write and carry a stable code, like Kiali's
validations, so the UI and automation can key on them.

Warnings are computed from the *validated* spec (the output of the serializer).

| code  | field                        | when                                                         |
| ----- | ---------------------------- | ------------------------------------------------------------ |
| TP001 | ``split[i].version``         | a split names a version no workload of the service runs      |
|       |                              | (checked only when the caller passes ``known_versions``)     |
| TP002 | ``split[i].weight``          | a split weight is 0: that version receives nothing           |
| TP003 | ``retries.per_try_timeout_ms`` | per-try timeout x (attempts + 1) exceeds ``timeout_ms``:   |
|       |                              | the later attempts can never run                             |
| TP004 | ``retries.non_idempotent``   | retrying non-idempotent requests may duplicate writes        |
| TP005 | ``fault.<delay|abort>.percent`` | a fault is injected into 100 % of the traffic             |
| AP001 | ``rules``                    | an ALLOW policy without rules allows nothing                 |
| AP002 | ``rules[j]``                 | an earlier ``rules[i]`` matches everything ``rules[j]`` does: |
|       |                              | identical rules, or the same ``from``, a ``to`` without      |
|       |                              | methods/paths/ports, and no ``when`` (or the same ``when``)  |
| AP003 | ``rules[i].to.methods[k]``   | a method with lowercase letters (methods are case-sensitive; |
|       |                              | ``get`` does not match ``GET``)                              |
| AP005 | ``rules[i]``                 | an ALLOW rule every request of which a DENY policy of the    |
|       |                              | namespace refuses first: it never takes effect               |
| AP006 | ``rules[i]``                 | a DENY rule that overrides every request an ALLOW rule of     |
|       |                              | another policy allows                                        |
| AP004 | ``rules[i].from.<list>``     | ``*`` next to specific entries in one source list: the       |
|       |                              | specific entries are redundant                               |

TP* codes come from TrafficPolicy specs, AP* codes from AuthorizationPolicy specs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jwt
from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from meshui.api.serializers import StrictBooleanField, StrictCharField, StrictIntegerField

MAX_TIMEOUT_MS = 600_000
MAX_INTERVAL_MS = 3_600_000
MAX_REPLAY_BODY_BYTES = 10 * 1024 * 1024
WILDCARD = "*"

# RFC 9110 section 5.6.2: a token is one or more "tchar"; header names and methods are tokens.
_TCHAR_RUN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_DNS1123_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
# Kubernetes service account names are DNS-1123 subdomains; trust domains are lowercase
# letters, digits, dots, dashes and underscores (SPIFFE ID spec, section 2.1).
_DNS1123_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
_SPIFFE_ID = rf"spiffe://[a-z0-9._-]+/ns/{_DNS1123_LABEL}/sa/{_DNS1123_SUBDOMAIN}"


def _full_match(pattern: str, message: str) -> RegexValidator:
    return RegexValidator(rf"\A(?:{pattern})\Z", message)


# ---------------------------------------------------------------------------------------
# Strict building blocks
# ---------------------------------------------------------------------------------------


class StrictSerializer(serializers.Serializer[Any]):
    """A plain serializer that refuses unknown keys, as ``StrictModelSerializer`` does.

    A misspelt key (``timout_ms``) silently ignored would ship a policy without the
    setting its author believes is there.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A finite JSON number; ``"50"``, ``true`` and NaN are type errors, not percentages."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float) or not math.isfinite(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class ExactCharField(StrictCharField):
    """A string kept exactly as sent: a path or name with stray whitespace is an error, not trimmed."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class HttpTokenField(ExactCharField):
    """An RFC 9110 token: a header name or a method."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validators", [_full_match(_TCHAR_RUN, "Enter a valid HTTP token (RFC 9110).")])
        super().__init__(**kwargs)


class HttpPathField(ExactCharField):
    """A request path to match: absolute, printable, and without dot-dot segments.

    A ``..`` segment (also percent-encoded) would never match a normalized request path,
    and rules written against un-normalized paths are the classic authorization bypass.
    """

    def to_internal_value(self, data: Any) -> str:
        path = super().to_internal_value(data)
        if not path.startswith("/"):
            raise serializers.ValidationError("A path must start with '/'.")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
            raise serializers.ValidationError("A path must not contain NUL or control characters.")
        if any(unquote(segment) == ".." for segment in path.split("/")):
            raise serializers.ValidationError("A path must not contain '..' segments.")
        return path


def _strict_list(child: serializers.Field[Any, Any, Any, Any], **kwargs: Any) -> serializers.ListField:
    # An empty source list reads as "nobody" to some and "anyone" to others; refusing it
    # makes the author omit the field (matches any) or name someone.
    kwargs.setdefault("allow_empty", False)
    kwargs.setdefault("required", False)
    return serializers.ListField(child=child, **kwargs)


def _unique(values: Iterable[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise serializers.ValidationError(f"Duplicate {what} {value!r}.")
        seen.add(value)


# ---------------------------------------------------------------------------------------
# TrafficPolicy
# ---------------------------------------------------------------------------------------


class LoadBalancerSerializer(StrictSerializer):
    policy = serializers.ChoiceField(choices=["round_robin", "least_request", "random", "consistent_hash"])
    hash_header = HttpTokenField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        hashing = attrs["policy"] == "consistent_hash"
        if hashing and "hash_header" not in attrs:
            raise serializers.ValidationError({"hash_header": ["Required when the policy is consistent_hash."]})
        if not hashing and "hash_header" in attrs:
            raise serializers.ValidationError({"hash_header": ["Only allowed when the policy is consistent_hash."]})
        return attrs


class RetriesSerializer(StrictSerializer):
    attempts = StrictIntegerField(min_value=0, max_value=10)
    per_try_timeout_ms = StrictIntegerField(min_value=1, max_value=MAX_TIMEOUT_MS, required=False)
    retry_on = _strict_list(serializers.ChoiceField(choices=["5xx", "connect-failure", "reset"]), required=True)
    non_idempotent = StrictBooleanField(default=False)
    max_replay_body_bytes = StrictIntegerField(min_value=0, max_value=MAX_REPLAY_BODY_BYTES, default=65536)

    def validate_retry_on(self, value: list[str]) -> list[str]:
        _unique(value, "retry condition")
        return value


class RetryBudgetSerializer(StrictSerializer):
    percent = StrictFloatField(min_value=0, max_value=100)
    min_per_second = StrictIntegerField(min_value=0, max_value=10_000)


class CircuitBreakerSerializer(StrictSerializer):
    max_connections = StrictIntegerField(min_value=1, max_value=1_000_000, required=False)
    max_pending_requests = StrictIntegerField(min_value=1, max_value=1_000_000, required=False)
    max_requests = StrictIntegerField(min_value=1, max_value=1_000_000, required=False)


class OutlierDetectionSerializer(StrictSerializer):
    consecutive_5xx = StrictIntegerField(min_value=1, max_value=1000, required=False)
    consecutive_gateway_errors = StrictIntegerField(min_value=1, max_value=1000, required=False)
    interval_ms = StrictIntegerField(min_value=100, max_value=MAX_INTERVAL_MS, required=False)
    base_ejection_ms = StrictIntegerField(min_value=100, max_value=MAX_INTERVAL_MS, required=False)
    max_ejection_percent = StrictIntegerField(min_value=0, max_value=100, required=False)


class SplitEntrySerializer(StrictSerializer):
    version = ExactCharField(min_length=1, max_length=63)
    weight = StrictIntegerField(min_value=0, max_value=100)


class FaultDelaySerializer(StrictSerializer):
    percent = StrictFloatField(min_value=0, max_value=100)
    fixed_delay_ms = StrictIntegerField(min_value=1, max_value=MAX_TIMEOUT_MS)


class FaultAbortSerializer(StrictSerializer):
    percent = StrictFloatField(min_value=0, max_value=100)
    http_status = StrictIntegerField(min_value=200, max_value=599)


class FaultSerializer(StrictSerializer):
    delay = FaultDelaySerializer(required=False)
    abort = FaultAbortSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give a delay, an abort, or both.")
        return attrs


class TrafficPolicySpecSerializer(StrictSerializer):
    """How callers reach one destination service."""

    load_balancer = LoadBalancerSerializer(required=False)
    timeout_ms = StrictIntegerField(min_value=1, max_value=MAX_TIMEOUT_MS, required=False)
    retries = RetriesSerializer(required=False)
    retry_budget = RetryBudgetSerializer(required=False)
    circuit_breaker = CircuitBreakerSerializer(required=False)
    outlier_detection = OutlierDetectionSerializer(required=False)
    split = SplitEntrySerializer(many=True, required=False)
    fault = FaultSerializer(required=False)

    def validate_split(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _unique((entry["version"] for entry in value), "version")
        total = sum(entry["weight"] for entry in value)
        if total != 100:
            raise serializers.ValidationError(f"Split weights sum to {total}; they must sum to exactly 100.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        per_try = attrs.get("retries", {}).get("per_try_timeout_ms")
        timeout = attrs.get("timeout_ms")
        if per_try is not None and timeout is not None and per_try > timeout:
            raise serializers.ValidationError(
                {
                    "retries": {
                        "per_try_timeout_ms": [
                            f"The per-try timeout ({per_try} ms) exceeds the request timeout ({timeout} ms)."
                        ]
                    }
                }
            )
        return attrs


# ---------------------------------------------------------------------------------------
# AuthorizationPolicy, PeerAuthentication, namespace default
# ---------------------------------------------------------------------------------------


class SourceSerializer(StrictSerializer):
    """Who the caller is; every list given must match (entries within a list are OR-ed)."""

    principals = _strict_list(
        ExactCharField(
            validators=[
                _full_match(
                    rf"{_SPIFFE_ID}|\*",
                    "Enter a SPIFFE id (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>) or '*'.",
                )
            ]
        )
    )
    namespaces = _strict_list(
        ExactCharField(validators=[_full_match(rf"{_DNS1123_LABEL}|\*", "Enter a DNS-1123 label or '*'.")])
    )
    # Istio's form: "<issuer>/<subject>"; the issuer is often a URL, so it may hold slashes.
    request_principals = _strict_list(
        ExactCharField(validators=[_full_match(r"[!-~]+/[!-~]+|\*", "Enter '<issuer>/<subject>' or '*'.")])
    )


class PathMatchSerializer(StrictSerializer):
    exact = HttpPathField(required=False)
    prefix = HttpPathField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError("Give exactly one of 'exact' or 'prefix'.")
        return attrs


class OperationSerializer(StrictSerializer):
    """What the caller asks for."""

    methods = _strict_list(HttpTokenField())
    paths = PathMatchSerializer(many=True, required=False, allow_empty=False)
    ports = _strict_list(StrictIntegerField(min_value=1, max_value=65535))


class HeaderConditionSerializer(StrictSerializer):
    """A request header (``header``) or a claim of the verified JWT (``claim``) with one of ``values``."""

    header = HttpTokenField(required=False)
    claim = ExactCharField(
        required=False,
        max_length=100,
        validators=[_full_match(r"[A-Za-z0-9_.:-]+", "Enter a claim name such as 'groups' or 'scope'.")],
    )
    values = _strict_list(ExactCharField(allow_blank=True), required=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("header" in attrs) == ("claim" in attrs):
            raise serializers.ValidationError("Give exactly one of 'header' or 'claim'.")
        return attrs


class AuthorizationRuleSerializer(StrictSerializer):
    to = OperationSerializer(required=False)
    when = HeaderConditionSerializer(many=True, required=False, allow_empty=False)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "from" is a Python keyword, so it cannot be declared as a class attribute.
        fields = super().get_fields()
        fields["from"] = SourceSerializer(required=False)
        return fields


class AuthorizationPolicySpecSerializer(StrictSerializer):
    """Allows or denies requests to a namespace or service; DENY is evaluated before ALLOW."""

    action = serializers.ChoiceField(choices=["ALLOW", "DENY"])
    rules = AuthorizationRuleSerializer(many=True, required=False)


# What agents accept to verify end-user tokens: asymmetric signatures only (no "none", no HMAC).
ASYMMETRIC_JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def jwks_problem(document: Any) -> str | None:
    """Why a JSON Web Key Set cannot verify tokens, or ``None`` when it can."""
    try:
        keys = jwt.PyJWKSet.from_dict(document).keys
    except (ValueError, TypeError, KeyError, AttributeError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
        return f"Not a usable JSON Web Key Set: {exc}"
    if not any(key.algorithm_name in ASYMMETRIC_JWT_ALGORITHMS for key in keys):
        return "The key set holds no asymmetric signing key (RSA, EC or Ed25519)."
    return None


class RequestAuthenticationSpecSerializer(StrictSerializer):
    """Which end-user JWTs a service accepts: an issuer, where its keys are, and the audiences."""

    issuer = ExactCharField(max_length=500, validators=[_full_match(r"[!-~]+", "Enter the issuer's 'iss' value.")])
    jwks_uri = serializers.URLField(required=False, max_length=500)
    jwks = serializers.JSONField(required=False)
    audiences = _strict_list(ExactCharField(max_length=500))

    def validate_jwks_uri(self, value: str) -> str:
        if value.startswith("https://") or (settings.MESH_JWKS_ALLOW_HTTP and value.startswith("http://")):
            return value
        raise serializers.ValidationError("Key sets are fetched over HTTPS only.")

    def validate_jwks(self, value: Any) -> Any:
        problem = jwks_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("jwks_uri" in attrs) == ("jwks" in attrs):
            raise serializers.ValidationError(
                "Give exactly one of 'jwks_uri' (fetched by the control plane) or 'jwks'."
            )
        return attrs


class PeerAuthenticationSpecSerializer(StrictSerializer):
    """Whether a namespace's agents accept plaintext next to mutual TLS."""

    mode = serializers.ChoiceField(choices=["STRICT", "PERMISSIVE"])


class NamespaceAuthorizationDefaultSerializer(StrictSerializer):
    """What happens to a request no authorization policy of the namespace decides."""

    default = serializers.ChoiceField(choices=["allow-all", "deny-all"])


# ---------------------------------------------------------------------------------------
# Warnings
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warning:  # shadows the builtin on purpose: the policy vocabulary's name, and never raised
    """A valid spec that is probably not what its author meant."""

    code: str
    field: str
    message: str


def traffic_policy_warnings(spec: Mapping[str, Any], known_versions: set[str] | None) -> list[Warning]:
    """Warnings for a validated TrafficPolicy spec (codes TP001-TP005)."""
    return [
        *_split_warnings(spec.get("split", []), known_versions),
        *_retry_warnings(spec.get("retries"), spec.get("timeout_ms")),
        *_fault_warnings(spec.get("fault")),
    ]


def _split_warnings(split: list[Mapping[str, Any]], known_versions: set[str] | None) -> list[Warning]:
    warnings = []
    for index, entry in enumerate(split):
        version = entry["version"]
        if known_versions is not None and version not in known_versions:
            warnings.append(
                Warning("TP001", f"split[{index}].version", f"No workload of this service runs version {version!r}.")
            )
        if entry["weight"] == 0:
            warnings.append(
                Warning("TP002", f"split[{index}].weight", f"Version {version!r} has weight 0 and receives no traffic.")
            )
    return warnings


def _retry_warnings(retries: Mapping[str, Any] | None, timeout_ms: int | None) -> list[Warning]:
    if not retries:
        return []
    warnings = []
    per_try = retries.get("per_try_timeout_ms")
    tries = retries["attempts"] + 1
    if per_try is not None and timeout_ms is not None and per_try * tries > timeout_ms:
        fitting = timeout_ms // per_try
        warnings.append(
            Warning(
                "TP003",
                "retries.per_try_timeout_ms",
                f"{tries} tries of {per_try} ms exceed the {timeout_ms} ms timeout; "
                f"at most {fitting} can run before the request times out.",
            )
        )
    if retries.get("non_idempotent"):
        warnings.append(
            Warning(
                "TP004",
                "retries.non_idempotent",
                "Retrying non-idempotent requests (POST, PATCH...) may apply a write more than once.",
            )
        )
    return warnings


def _fault_warnings(fault: Mapping[str, Any] | None) -> list[Warning]:
    if not fault:
        return []
    return [
        Warning("TP005", f"fault.{kind}.percent", f"The {kind} fault is injected into all traffic.")
        for kind in ("delay", "abort")
        if kind in fault and fault[kind]["percent"] >= 100
    ]


def authorization_policy_warnings(spec: Mapping[str, Any]) -> list[Warning]:
    """Warnings for a validated AuthorizationPolicy spec (codes AP001-AP004)."""
    rules = spec.get("rules", [])
    warnings = []
    if spec["action"] == "ALLOW" and not rules:
        warnings.append(Warning("AP001", "rules", "An ALLOW policy without rules allows nothing."))
    warnings.extend(_shadowed_rule_warnings(rules))
    for index, rule in enumerate(rules):
        warnings.extend(_lowercase_method_warnings(index, rule))
        warnings.extend(_redundant_wildcard_warnings(index, rule))
    return warnings


def _shadowed_rule_warnings(rules: list[Mapping[str, Any]]) -> list[Warning]:
    warnings = []
    for later_index, later in enumerate(rules):
        earlier_index = next(
            (index for index, earlier in enumerate(rules[:later_index]) if _covers(earlier, later)),
            None,
        )
        if earlier_index is not None:
            warnings.append(
                Warning(
                    "AP002",
                    f"rules[{later_index}]",
                    f"rules[{earlier_index}] already matches every request this rule matches.",
                )
            )
    return warnings


def _covers(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """Conservatively, whether ``earlier`` matches a superset of ``later``'s requests.

    Only two sure cases count: the rules are identical, or they share the same sources
    and the earlier one restricts neither the operation nor (beyond ``later``) the headers.
    Anything subtler (e.g. prefix containment) is left alone rather than guessed at.
    """
    if _normalized(earlier) == _normalized(later):
        return True
    same_sources = (earlier.get("from") or {}) == (later.get("from") or {})
    any_operation = not any((earlier.get("to") or {}).get(key) for key in ("methods", "paths", "ports"))
    conditions = earlier.get("when") or []
    return same_sources and any_operation and (not conditions or conditions == (later.get("when") or []))


def _matches_everything(rule: Mapping[str, Any]) -> bool:
    operation = rule.get("to") or {}
    return (
        not rule.get("from")
        and not any(operation.get(k) for k in ("methods", "paths", "ports"))
        and not rule.get("when")
    )


def authorization_conflict_warnings(
    spec: Mapping[str, Any], others: list[tuple[str, Mapping[str, Any]]]
) -> list[Warning]:
    """Warnings for a policy against the namespace's other authorization policies (``(id, spec)``) that
    apply where it does: AP005 and AP006. DENY is evaluated before ALLOW, so a DENY rule covering an
    ALLOW rule makes the ALLOW rule dead."""
    warnings = []
    rules = spec.get("rules", [])
    for other_id, other in others:
        other_rules = other.get("rules", [])
        if spec["action"] == "ALLOW" and other["action"] == "DENY":
            for index, rule in enumerate(rules):
                if any(_matches_everything(deny) or _covers(deny, rule) for deny in other_rules):
                    warnings.append(
                        Warning(
                            "AP005",
                            f"rules[{index}]",
                            f"DENY policy {other_id} refuses every request this rule allows.",
                        )
                    )
        elif spec["action"] == "DENY" and other["action"] == "ALLOW":
            for index, rule in enumerate(rules):
                dead = [j for j, allow in enumerate(other_rules) if _matches_everything(rule) or _covers(rule, allow)]
                if dead:
                    warnings.append(
                        Warning(
                            "AP006",
                            f"rules[{index}]",
                            f"This rule refuses every request that rules{dead} of ALLOW policy {other_id} would allow.",
                        )
                    )
    return warnings


def _normalized(rule: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    # An absent "from"/"to"/"when" and an empty one mean the same: no restriction.
    return (rule.get("from") or {}, rule.get("to") or {}, rule.get("when") or [])


def _lowercase_method_warnings(rule_index: int, rule: Mapping[str, Any]) -> list[Warning]:
    methods = (rule.get("to") or {}).get("methods", [])
    return [
        Warning(
            "AP003",
            f"rules[{rule_index}].to.methods[{index}]",
            f"Methods are case-sensitive: {method!r} does not match {method.upper()!r}.",
        )
        for index, method in enumerate(methods)
        if method != method.upper()
    ]


def _redundant_wildcard_warnings(rule_index: int, rule: Mapping[str, Any]) -> list[Warning]:
    source = rule.get("from") or {}
    return [
        Warning(
            "AP004",
            f"rules[{rule_index}].from.{key}",
            f"'*' already matches everyone; the other entries of {key} are redundant.",
        )
        for key in ("principals", "namespaces", "request_principals")
        if WILDCARD in source.get(key, []) and len(source[key]) > 1
    ]


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------


def _validated(serializer: serializers.Serializer[Any]) -> dict[str, Any]:
    """The validated data, or a field-level ``ValidationError``."""
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def validate_traffic_policy(
    spec: Any, *, known_versions: set[str] | None = None
) -> tuple[dict[str, Any], list[Warning]]:
    """Validates a TrafficPolicy spec; ``known_versions`` are the versions the service's workloads run."""
    data = _validated(TrafficPolicySpecSerializer(data=spec))
    return data, traffic_policy_warnings(data, known_versions)


def validate_authorization_policy(spec: Any) -> tuple[dict[str, Any], list[Warning]]:
    data = _validated(AuthorizationPolicySpecSerializer(data=spec))
    return data, authorization_policy_warnings(data)


def validate_request_authentication(spec: Any) -> tuple[dict[str, Any], list[Warning]]:
    return _validated(RequestAuthenticationSpecSerializer(data=spec)), []


def validate_peer_authentication(spec: Any) -> tuple[dict[str, Any], list[Warning]]:
    # No warnings yet; the tuple keeps every kind's entry point the same shape for callers.
    return _validated(PeerAuthenticationSpecSerializer(data=spec)), []


def validate_namespace_authorization_default(spec: Any) -> tuple[dict[str, Any], list[Warning]]:
    return _validated(NamespaceAuthorizationDefaultSerializer(data=spec)), []


__all__ = [
    "AuthorizationPolicySpecSerializer",
    "NamespaceAuthorizationDefaultSerializer",
    "PeerAuthenticationSpecSerializer",
    "RequestAuthenticationSpecSerializer",
    "TrafficPolicySpecSerializer",
    "ValidationError",
    "Warning",
    "authorization_conflict_warnings",
    "authorization_policy_warnings",
    "traffic_policy_warnings",
    "validate_authorization_policy",
    "validate_namespace_authorization_default",
    "validate_peer_authentication",
    "validate_request_authentication",
    "validate_traffic_policy",
]
