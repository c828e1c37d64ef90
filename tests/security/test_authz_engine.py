"""The authorization engine's rules, one at a time."""

from __future__ import annotations

from proxyagent.authz.engine import RequestFacts, authorize
from proxyagent.authz.paths import normalize_host
from proxyagent.inbound_policy import (
    AuthorizationAction,
    AuthorizationDefault,
    AuthorizationOperation,
    AuthorizationPolicy,
    AuthorizationRule,
    AuthorizationSource,
    HeaderCondition,
    InboundPolicy,
)

WEB = "spiffe://cluster.local/ns/shop/sa/web"


def allow(rule: AuthorizationRule, service: str = "", policy_id: str = "shop/p") -> InboundPolicy:
    return InboundPolicy(
        authorization_default=AuthorizationDefault.DENY_ALL,
        authorization_policies=(AuthorizationPolicy(policy_id, service, AuthorizationAction.ALLOW, (rule,)),),
    )


def facts(principal: str | None = WEB, **kwargs: object) -> RequestFacts:
    base: dict[str, object] = {"method": "GET", "path": "/", "port": 9080, "principal": principal}
    return RequestFacts(**{**base, **kwargs})  # type: ignore[arg-type]


def test_a_wildcard_principal_means_any_authenticated_caller_never_a_plaintext_one() -> None:
    policy = allow(AuthorizationRule(AuthorizationSource(principals=("*",)), AuthorizationOperation()))
    assert authorize(policy, "reviews", "shop", facts()).allowed
    denied = authorize(policy, "reviews", "shop", facts(principal=None))
    assert not denied.allowed
    assert denied.policy_id == "shop/default"


def test_namespaces_come_from_the_verified_identity() -> None:
    policy = allow(AuthorizationRule(AuthorizationSource(namespaces=("shop",)), AuthorizationOperation()))
    assert authorize(policy, "reviews", "shop", facts()).allowed
    assert not authorize(policy, "reviews", "shop", facts("spiffe://cluster.local/ns/batch/sa/web")).allowed


def test_request_principals_need_a_verified_token() -> None:
    rule = AuthorizationRule(
        AuthorizationSource(request_principals=("https://id.example/alice",)), AuthorizationOperation()
    )
    policy = allow(rule)
    assert not authorize(policy, "reviews", "shop", facts()).allowed
    assert authorize(policy, "reviews", "shop", facts(request_principal="https://id.example/alice")).allowed
    assert not authorize(policy, "reviews", "shop", facts(request_principal="https://id.example/bob")).allowed


def test_ports_and_header_conditions() -> None:
    rule = AuthorizationRule(
        AuthorizationSource(),
        AuthorizationOperation(ports=(9080,)),
        (HeaderCondition("x-tenant", ("blue", "green")),),
    )
    policy = allow(rule)
    assert authorize(policy, "reviews", "shop", facts(headers={"x-tenant": ["green"]})).allowed
    assert not authorize(policy, "reviews", "shop", facts(headers={"x-tenant": ["red"]})).allowed
    assert not authorize(policy, "reviews", "shop", facts()).allowed
    assert not authorize(policy, "reviews", "shop", facts(port=9090, headers={"x-tenant": ["blue"]})).allowed


def test_a_policy_for_another_service_does_not_apply() -> None:
    policy = allow(AuthorizationRule(AuthorizationSource(), AuthorizationOperation()), service="ratings")
    assert not authorize(policy, "reviews", "shop", facts()).allowed
    assert authorize(policy, "ratings", "shop", facts()).allowed


def test_deny_wins_over_allow_and_names_itself() -> None:
    everyone = AuthorizationRule(AuthorizationSource(), AuthorizationOperation())
    policy = InboundPolicy(
        authorization_policies=(
            AuthorizationPolicy("shop/allow-all", "", AuthorizationAction.ALLOW, (everyone,)),
            AuthorizationPolicy(
                "shop/block-web",
                "",
                AuthorizationAction.DENY,
                (AuthorizationRule(AuthorizationSource(principals=(WEB,)), AuthorizationOperation()),),
            ),
        )
    )
    decision = authorize(policy, "reviews", "shop", facts())
    assert (decision.allowed, decision.policy_id) == (False, "shop/block-web")
    assert (
        authorize(policy, "reviews", "shop", facts("spiffe://cluster.local/ns/shop/sa/other")).policy_id
        == "shop/allow-all"
    )


def test_an_allow_all_default_allows_what_no_policy_decides() -> None:
    decision = authorize(InboundPolicy(), "reviews", "shop", facts(principal=None))
    assert (decision.allowed, decision.policy_id) == (True, None)


def test_hosts_match_without_case_port_or_trailing_dot() -> None:
    assert normalize_host("Reviews.Shop.:9080") == "reviews.shop"
    assert normalize_host("[::1]") == "[::1]"
    assert normalize_host("reviews") == "reviews"
