"""Policy spec validation: field-level errors at the right path, and coded warnings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.exceptions import ValidationError

from meshui.policy.validation import (
    Warning,
    authorization_policy_warnings,
    traffic_policy_warnings,
    validate_authorization_policy,
    validate_namespace_authorization_default,
    validate_peer_authentication,
    validate_traffic_policy,
)

SPIFFE = "spiffe://cluster.local/ns/shop/sa/frontend"
Validator = Callable[[Any], tuple[dict[str, Any], list[Warning]]]


def errors_of(validate: Validator, spec: Any) -> Any:
    with pytest.raises(ValidationError) as caught:
        validate(spec)
    return caught.value.detail


def at(detail: Any, path: tuple[str | int, ...]) -> list[str]:
    """The messages at ``path`` in a DRF error tree, as plain strings."""
    for step in path:
        detail = detail[step]
    assert isinstance(detail, list), detail
    return [str(message) for message in detail]


def codes(warnings: list[Warning]) -> list[tuple[str, str]]:
    return [(warning.code, warning.field) for warning in warnings]


# ---------------------------------------------------------------------------------------
# TrafficPolicy: valid specs
# ---------------------------------------------------------------------------------------

FULL_TRAFFIC_POLICY: dict[str, Any] = {
    "load_balancer": {"policy": "consistent_hash", "hash_header": "x-user-id"},
    "timeout_ms": 3000,
    "retries": {"attempts": 2, "per_try_timeout_ms": 1000, "retry_on": ["5xx", "reset"]},
    "retry_budget": {"percent": 20.0, "min_per_second": 5},
    "circuit_breaker": {"max_connections": 100, "max_pending_requests": 50, "max_requests": 200},
    "outlier_detection": {
        "consecutive_5xx": 5,
        "consecutive_gateway_errors": 3,
        "interval_ms": 10_000,
        "base_ejection_ms": 30_000,
        "max_ejection_percent": 50,
    },
    "split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
    "fault": {"delay": {"percent": 5, "fixed_delay_ms": 200}, "abort": {"percent": 1.5, "http_status": 503}},
}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="empty"),
        pytest.param(FULL_TRAFFIC_POLICY, id="everything"),
        pytest.param({"load_balancer": {"policy": "least_request"}}, id="lb-without-hash"),
        pytest.param({"timeout_ms": 1}, id="timeout-min"),
        pytest.param({"timeout_ms": 600_000}, id="timeout-max"),
        pytest.param({"retries": {"attempts": 0, "retry_on": ["connect-failure"]}}, id="retries-minimal"),
        pytest.param({"retry_budget": {"percent": 0, "min_per_second": 0}}, id="budget-zero"),
        pytest.param({"circuit_breaker": {"max_requests": 1_000_000}}, id="breaker-one-limit"),
        pytest.param({"split": [{"version": "v1", "weight": 100}]}, id="split-single"),
        pytest.param({"fault": {"abort": {"percent": 10, "http_status": 200}}}, id="fault-abort-only"),
        pytest.param(
            {"timeout_ms": 1000, "retries": {"attempts": 0, "per_try_timeout_ms": 1000, "retry_on": ["5xx"]}},
            id="per-try-equal-to-timeout",
        ),
    ],
)
def test_valid_traffic_policies_pass(spec: dict[str, Any]) -> None:
    data, _ = validate_traffic_policy(spec)
    assert set(data) == set(spec)


def test_retries_defaults_are_filled_in() -> None:
    data, _ = validate_traffic_policy({"retries": {"attempts": 1, "retry_on": ["5xx"]}})
    assert data["retries"]["non_idempotent"] is False
    assert data["retries"]["max_replay_body_bytes"] == 65536


# ---------------------------------------------------------------------------------------
# TrafficPolicy: errors at the right field
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param({"timout_ms": 5}, ("timout_ms",), "Unknown field", id="unknown-top-level"),
        pytest.param(
            {"retries": {"attempts": 1, "retry_on": ["5xx"], "tries": 2}},
            ("retries", "tries"),
            "Unknown field",
            id="unknown-nested",
        ),
        pytest.param(
            {"load_balancer": {"policy": "fastest"}},
            ("load_balancer", "policy"),
            "not a valid choice",
            id="lb-bad-policy",
        ),
        pytest.param(
            {"load_balancer": {"policy": "consistent_hash"}},
            ("load_balancer", "hash_header"),
            "Required when",
            id="hash-header-missing",
        ),
        pytest.param(
            {"load_balancer": {"policy": "random", "hash_header": "x-id"}},
            ("load_balancer", "hash_header"),
            "Only allowed",
            id="hash-header-without-hashing",
        ),
        pytest.param(
            {"load_balancer": {"policy": "consistent_hash", "hash_header": "x user"}},
            ("load_balancer", "hash_header"),
            "HTTP token",
            id="hash-header-not-token",
        ),
        pytest.param({"timeout_ms": 0}, ("timeout_ms",), "greater than or equal to 1", id="timeout-zero"),
        pytest.param({"timeout_ms": 600_001}, ("timeout_ms",), "less than or equal to 600000", id="timeout-high"),
        pytest.param({"timeout_ms": "1000"}, ("timeout_ms",), "valid integer", id="timeout-string"),
        pytest.param({"timeout_ms": True}, ("timeout_ms",), "valid integer", id="timeout-bool"),
        pytest.param(
            {"retries": {"attempts": 11, "retry_on": ["5xx"]}},
            ("retries", "attempts"),
            "less than or equal to 10",
            id="attempts-high",
        ),
        pytest.param(
            {"retries": {"attempts": 1, "retry_on": []}},
            ("retries", "retry_on"),
            "may not be empty",
            id="retry-on-empty",
        ),
        pytest.param(
            {"retries": {"attempts": 1, "retry_on": ["5xx", "5xx"]}},
            ("retries", "retry_on"),
            "Duplicate retry condition '5xx'",
            id="retry-on-duplicate",
        ),
        pytest.param(
            {"retries": {"attempts": 1, "retry_on": ["gateway-error"]}},
            ("retries", "retry_on", 0),
            "not a valid choice",
            id="retry-on-unknown",
        ),
        pytest.param({"retries": {"attempts": 1}}, ("retries", "retry_on"), "required", id="retry-on-missing"),
        pytest.param(
            {"retries": {"attempts": 1, "retry_on": ["5xx"], "max_replay_body_bytes": 10_485_761}},
            ("retries", "max_replay_body_bytes"),
            "less than or equal to 10485760",
            id="replay-too-big",
        ),
        pytest.param(
            {"timeout_ms": 500, "retries": {"attempts": 1, "per_try_timeout_ms": 501, "retry_on": ["5xx"]}},
            ("retries", "per_try_timeout_ms"),
            "(501 ms) exceeds the request timeout (500 ms)",
            id="per-try-over-timeout",
        ),
        pytest.param(
            {"retry_budget": {"percent": 100.5, "min_per_second": 1}},
            ("retry_budget", "percent"),
            "less than or equal to 100",
            id="budget-percent-high",
        ),
        pytest.param(
            {"retry_budget": {"percent": float("nan"), "min_per_second": 1}},
            ("retry_budget", "percent"),
            "valid number",
            id="budget-percent-nan",
        ),
        pytest.param(
            {"retry_budget": {"percent": 10, "min_per_second": 10_001}},
            ("retry_budget", "min_per_second"),
            "less than or equal to 10000",
            id="budget-min-high",
        ),
        pytest.param(
            {"circuit_breaker": {"max_pending_requests": 0}},
            ("circuit_breaker", "max_pending_requests"),
            "greater than or equal to 1",
            id="breaker-zero",
        ),
        pytest.param(
            {"outlier_detection": {"interval_ms": 99}},
            ("outlier_detection", "interval_ms"),
            "greater than or equal to 100",
            id="outlier-interval-low",
        ),
        pytest.param(
            {"outlier_detection": {"max_ejection_percent": 101}},
            ("outlier_detection", "max_ejection_percent"),
            "less than or equal to 100",
            id="outlier-percent-high",
        ),
        pytest.param({"split": [{"version": "v1", "weight": 90}]}, ("split",), "sum to 90", id="split-sum-low"),
        pytest.param(
            {"split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 20}]},
            ("split",),
            "sum to 110; they must sum to exactly 100",
            id="split-sum-high",
        ),
        pytest.param({"split": []}, ("split",), "sum to 0", id="split-empty"),
        pytest.param(
            {"split": [{"version": "v1", "weight": 50}, {"version": "v1", "weight": 50}]},
            ("split",),
            "Duplicate version 'v1'",
            id="split-duplicate-version",
        ),
        pytest.param(
            {"split": [{"version": "v1", "weight": 101}]},
            ("split", 0, "weight"),
            "less than or equal to 100",
            id="split-weight-high",
        ),
        pytest.param(
            {"split": [{"version": "v1", "weight": 100, "canary": True}]},
            ("split", 0, "canary"),
            "Unknown field",
            id="split-unknown-key",
        ),
        pytest.param({"fault": {}}, ("fault", "non_field_errors"), "a delay, an abort, or both", id="fault-empty"),
        pytest.param(
            {"fault": {"abort": {"percent": 10, "http_status": 600}}},
            ("fault", "abort", "http_status"),
            "less than or equal to 599",
            id="fault-status-high",
        ),
        pytest.param(
            {"fault": {"delay": {"percent": 10}}},
            ("fault", "delay", "fixed_delay_ms"),
            "required",
            id="fault-delay-missing",
        ),
        pytest.param([], ("non_field_errors",), "Expected a dictionary", id="not-an-object"),
    ],
)
def test_invalid_traffic_policies_are_rejected_at_the_field(
    spec: Any, path: tuple[str | int, ...], fragment: str
) -> None:
    messages = at(errors_of(validate_traffic_policy, spec), path)
    assert any(fragment in message for message in messages), messages


# ---------------------------------------------------------------------------------------
# TrafficPolicy: warnings
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "known_versions", "expected"),
    [
        pytest.param(FULL_TRAFFIC_POLICY, {"v1", "v2"}, [], id="clean"),
        pytest.param({"split": [{"version": "v1", "weight": 100}]}, None, [], id="unknown-versions-not-checked"),
        pytest.param(
            {"split": [{"version": "v1", "weight": 50}, {"version": "v3", "weight": 50}]},
            {"v1", "v2"},
            [("TP001", "split[1].version")],
            id="TP001",
        ),
        pytest.param(
            {"split": [{"version": "v1", "weight": 100}, {"version": "v2", "weight": 0}]},
            {"v1", "v2"},
            [("TP002", "split[1].weight")],
            id="TP002",
        ),
        pytest.param(
            {"timeout_ms": 1000, "retries": {"attempts": 2, "per_try_timeout_ms": 400, "retry_on": ["5xx"]}},
            None,
            [("TP003", "retries.per_try_timeout_ms")],
            id="TP003",
        ),
        pytest.param(
            {"timeout_ms": 1200, "retries": {"attempts": 2, "per_try_timeout_ms": 400, "retry_on": ["5xx"]}},
            None,
            [],
            id="TP003-exactly-fits",
        ),
        pytest.param(
            {"retries": {"attempts": 2, "per_try_timeout_ms": 400, "retry_on": ["5xx"]}},
            None,
            [],
            id="TP003-no-overall-timeout",
        ),
        pytest.param(
            {"retries": {"attempts": 1, "retry_on": ["5xx"], "non_idempotent": True}},
            None,
            [("TP004", "retries.non_idempotent")],
            id="TP004",
        ),
        pytest.param(
            {"fault": {"delay": {"percent": 100, "fixed_delay_ms": 5}, "abort": {"percent": 100, "http_status": 503}}},
            None,
            [("TP005", "fault.delay.percent"), ("TP005", "fault.abort.percent")],
            id="TP005-both",
        ),
        pytest.param({"fault": {"abort": {"percent": 99.9, "http_status": 503}}}, None, [], id="TP005-not-all"),
    ],
)
def test_traffic_policy_warnings(
    spec: dict[str, Any], known_versions: set[str] | None, expected: list[tuple[str, str]]
) -> None:
    _, warnings = validate_traffic_policy(spec, known_versions=known_versions)
    assert codes(warnings) == expected


def test_warning_messages_explain_themselves() -> None:
    data, _ = validate_traffic_policy(
        {
            "timeout_ms": 1000,
            "retries": {"attempts": 3, "per_try_timeout_ms": 400, "retry_on": ["5xx"]},
            "split": [{"version": "v9", "weight": 100}],
        }
    )
    by_code = {warning.code: warning.message for warning in traffic_policy_warnings(data, {"v1"})}
    assert "'v9'" in by_code["TP001"]
    assert "4 tries of 400 ms exceed the 1000 ms timeout" in by_code["TP003"]
    assert "at most 2" in by_code["TP003"]


def test_warnings_are_frozen() -> None:
    warning = Warning("TP002", "split[0].weight", "x")
    with pytest.raises(AttributeError):
        warning.code = "TP001"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------
# AuthorizationPolicy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"action": "DENY"}, id="deny-no-rules"),
        pytest.param({"action": "ALLOW", "rules": [{}]}, id="allow-anything"),
        pytest.param(
            {
                "action": "ALLOW",
                "rules": [
                    {
                        "from": {
                            "principals": [SPIFFE, "spiffe://example.org/ns/a/sa/svc.account"],
                            "namespaces": ["shop"],
                            "request_principals": ["https://issuer.example.com/user-42"],
                        },
                        "to": {
                            "methods": ["GET", "POST", "PROPFIND"],
                            "paths": [{"exact": "/api/v1/items"}, {"prefix": "/static/"}],
                            "ports": [1, 8080, 65535],
                        },
                        "when": [{"header": "x-tenant", "values": ["blue", "green"]}],
                    }
                ],
            },
            id="full",
        ),
        pytest.param({"action": "DENY", "rules": [{"from": {"principals": ["*"]}}]}, id="wildcard-principal"),
    ],
)
def test_valid_authorization_policies_pass(spec: dict[str, Any]) -> None:
    data, _ = validate_authorization_policy(spec)
    assert data["action"] == spec["action"]
    assert data.get("rules", []) == spec.get("rules", [])


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param({}, ("action",), "required", id="action-missing"),
        pytest.param({"action": "AUDIT"}, ("action",), "not a valid choice", id="action-unknown"),
        pytest.param({"action": "ALLOW", "scope": "x"}, ("scope",), "Unknown field", id="unknown-top-level"),
        pytest.param(
            {"action": "ALLOW", "rules": [{"form": {}}]}, ("rules", 0, "form"), "Unknown field", id="unknown-in-rule"
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"from": {"principals": ["frontend"]}}]},
            ("rules", 0, "from", "principals", 0),
            "SPIFFE id",
            id="principal-not-spiffe",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"from": {"principals": ["spiffe://cluster.local/ns/Shop/sa/x"]}}]},
            ("rules", 0, "from", "principals", 0),
            "SPIFFE id",
            id="principal-uppercase-namespace",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"from": {"principals": []}}]},
            ("rules", 0, "from", "principals"),
            "may not be empty",
            id="principals-empty",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"from": {"namespaces": ["Shop_1"]}}]},
            ("rules", 0, "from", "namespaces", 0),
            "DNS-1123",
            id="namespace-invalid",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"from": {"namespaces": ["a" * 64]}}]},
            ("rules", 0, "from", "namespaces", 0),
            "DNS-1123",
            id="namespace-too-long",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"from": {"request_principals": ["no-subject"]}}]},
            ("rules", 0, "from", "request_principals", 0),
            "<issuer>/<subject>",
            id="request-principal",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"methods": ["GET POST"]}}]},
            ("rules", 0, "to", "methods", 0),
            "HTTP token",
            id="method-not-token",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"paths": [{"exact": "api"}]}}]},
            ("rules", 0, "to", "paths", 0, "exact"),
            "start with '/'",
            id="path-relative",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"paths": [{"prefix": "/a\x00b"}]}}]},
            ("rules", 0, "to", "paths", 0, "prefix"),
            "control characters",
            id="path-nul",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"paths": [{"exact": "/a/../admin"}]}}]},
            ("rules", 0, "to", "paths", 0, "exact"),
            "'..' segments",
            id="path-dotdot",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"paths": [{"exact": "/a/%2E%2e/admin"}]}}]},
            ("rules", 0, "to", "paths", 0, "exact"),
            "'..' segments",
            id="path-encoded-dotdot",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"paths": [{"exact": "/a", "prefix": "/b"}]}}]},
            ("rules", 0, "to", "paths", 0, "non_field_errors"),
            "exactly one",
            id="path-both-kinds",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"paths": [{}]}}]},
            ("rules", 0, "to", "paths", 0, "non_field_errors"),
            "exactly one",
            id="path-no-kind",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"ports": [0]}}]},
            ("rules", 0, "to", "ports", 0),
            "greater than or equal to 1",
            id="port-zero",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"to": {"ports": [65536]}}]},
            ("rules", 0, "to", "ports", 0),
            "less than or equal to 65535",
            id="port-high",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"when": [{"header": "x-tenant", "values": []}]}]},
            ("rules", 0, "when", 0, "values"),
            "may not be empty",
            id="when-no-values",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [{"when": [{"header": "bad header", "values": ["x"]}]}]},
            ("rules", 0, "when", 0, "header"),
            "HTTP token",
            id="when-bad-header",
        ),
    ],
)
def test_invalid_authorization_policies_are_rejected_at_the_field(
    spec: Any, path: tuple[str | int, ...], fragment: str
) -> None:
    messages = at(errors_of(validate_authorization_policy, spec), path)
    assert any(fragment in message for message in messages), messages


def rule(**parts: Any) -> dict[str, Any]:
    # "from" is a keyword, so tests pass it as from_.
    if "from_" in parts:
        parts["from"] = parts.pop("from_")
    return parts


FRONTEND = {"principals": [SPIFFE]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"action": "ALLOW", "rules": []}, [("AP001", "rules")], id="AP001-empty"),
        pytest.param({"action": "ALLOW"}, [("AP001", "rules")], id="AP001-absent"),
        pytest.param({"action": "DENY"}, [], id="AP001-not-for-deny"),
        pytest.param(
            {"action": "ALLOW", "rules": [rule(from_=FRONTEND), rule(from_=FRONTEND, to={"methods": ["GET"]})]},
            [("AP002", "rules[1]")],
            id="AP002-unrestricted-earlier",
        ),
        pytest.param(
            {"action": "DENY", "rules": [rule(to={"ports": [80]}), rule(to={"ports": [80]})]},
            [("AP002", "rules[1]")],
            id="AP002-identical",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [rule(from_=FRONTEND, to={"methods": ["GET"]}), rule(from_=FRONTEND)]},
            [],
            id="AP002-not-when-earlier-is-narrower",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [rule(from_=FRONTEND), rule(from_={"namespaces": ["shop"]})]},
            [],
            id="AP002-not-for-other-sources",
        ),
        pytest.param(
            {
                "action": "ALLOW",
                "rules": [
                    rule(from_=FRONTEND, when=[{"header": "x-a", "values": ["1"]}]),
                    rule(from_=FRONTEND, to={"methods": ["GET"]}),
                ],
            },
            [],
            id="AP002-not-when-earlier-has-conditions",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [rule(to={"methods": ["get", "POST", "Put"]})]},
            [("AP003", "rules[0].to.methods[0]"), ("AP003", "rules[0].to.methods[2]")],
            id="AP003",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [rule(from_={"principals": ["*", SPIFFE], "namespaces": ["*"]})]},
            [("AP004", "rules[0].from.principals")],
            id="AP004",
        ),
        pytest.param(
            {"action": "ALLOW", "rules": [rule(from_={"request_principals": ["iss/sub", "*"]})]},
            [("AP004", "rules[0].from.request_principals")],
            id="AP004-request-principals",
        ),
    ],
)
def test_authorization_policy_warnings(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    _, warnings = validate_authorization_policy(spec)
    assert codes(warnings) == expected


def test_shadowing_warning_names_the_earlier_rule() -> None:
    data, _ = validate_authorization_policy(
        {"action": "DENY", "rules": [rule(to={"ports": [1]}), rule(from_=FRONTEND), rule(from_=FRONTEND)]}
    )
    [warning] = authorization_policy_warnings(data)
    assert (warning.code, warning.field) == ("AP002", "rules[2]")
    assert "rules[1]" in warning.message


def test_lowercase_method_warning_suggests_the_uppercase_form() -> None:
    [warning] = authorization_policy_warnings({"action": "ALLOW", "rules": [{"to": {"methods": ["get"]}}]})
    assert "'GET'" in warning.message


# ---------------------------------------------------------------------------------------
# PeerAuthentication and the namespace default
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE"])
def test_peer_authentication_modes(mode: str) -> None:
    assert validate_peer_authentication({"mode": mode}) == ({"mode": mode}, [])


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"mode": "strict"}, "mode", "not a valid choice"),
        ({}, "mode", "required"),
        ({"mode": "STRICT", "port_mtls": {}}, "port_mtls", "Unknown field"),
    ],
)
def test_peer_authentication_errors(spec: dict[str, Any], field: str, fragment: str) -> None:
    messages = at(errors_of(validate_peer_authentication, spec), (field,))
    assert any(fragment in message for message in messages), messages


@pytest.mark.parametrize("default", ["allow-all", "deny-all"])
def test_namespace_defaults(default: str) -> None:
    assert validate_namespace_authorization_default({"default": default}) == ({"default": default}, [])


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"default": "deny"}, "default", "not a valid choice"),
        ({}, "default", "required"),
        ({"default": "deny-all", "mode": "STRICT"}, "mode", "Unknown field"),
    ],
)
def test_namespace_default_errors(spec: dict[str, Any], field: str, fragment: str) -> None:
    messages = at(errors_of(validate_namespace_authorization_default, spec), (field,))
    assert any(fragment in message for message in messages), messages
