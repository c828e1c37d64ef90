"""Path-normalization and authorization bypass attempts from the corpus, against the agent's engine."""

from __future__ import annotations

import pytest

from proxyagent.authz.engine import RequestFacts, authorize
from proxyagent.authz.paths import PathRejected, check_method, normalize_target
from tests.security import corpus

POLICY = corpus.compiled_policy()


@pytest.mark.parametrize("case", corpus.path_cases(), ids=lambda case: case.name)
def test_path_case(case: corpus.PathCase) -> None:
    try:
        method = check_method(case.method)
        normalized = normalize_target(case.target)
    except PathRejected:
        outcome, forwarded, policy_id = "rejected", None, None
    else:
        facts = RequestFacts(method=method, path=normalized.path, port=corpus.APP_PORT, principal=case.caller)
        decision = authorize(POLICY, corpus.SERVICE, corpus.NAMESPACE, facts)
        outcome = "allowed" if decision.allowed else "denied"
        forwarded, policy_id = normalized.target, decision.policy_id
    # A case "gets through" when it reaches the application though the corpus says it must not,
    # or reaches it at another path than the one authorized.
    got_through = outcome == "allowed" and (case.expect != "allowed" or forwarded != case.forwarded)
    corpus.record("path", case.name, got_through)
    assert outcome == case.expect
    if case.expect == "allowed":
        assert forwarded == case.forwarded
    if case.expect == "denied":
        assert policy_id == case.policy
