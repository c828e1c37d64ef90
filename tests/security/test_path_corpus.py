"""Path-normalization and authorization bypass attempts from the corpus, through the agent's inbound gate."""

from __future__ import annotations

import pytest

from proxyagent.authz.gate import InboundGate
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from tests.security import corpus

# The gate the agent builds for its own service from the corpus's policy, compiled as production compiles it.
GATE = InboundGate(corpus.compiled_policy(), corpus.SERVICE, corpus.NAMESPACE, corpus.APP_PORT)


@pytest.mark.parametrize("case", corpus.path_cases(), ids=lambda case: case.name)
def test_path_case(case: corpus.PathCase) -> None:
    forwarded: str | None = None
    policy_id: str | None = None
    try:
        admission = GATE.admit(case.method.encode("latin-1"), case.target.encode("latin-1"), [], case.caller)
    except MeshError as refusal:
        outcome = {MeshErrorCode.BAD_REQUEST: "rejected", MeshErrorCode.DENIED: "denied"}.get(refusal.code, "other")
        policy_id = refusal.policy or None
    else:
        outcome, forwarded = "allowed", admission.target.decode("latin-1")
    # A case "gets through" when it reaches the application though the corpus says it must not,
    # or reaches it at another path than the one authorized.
    got_through = outcome == "allowed" and (case.expect != "allowed" or forwarded != case.forwarded)
    corpus.record("path", case.name, got_through)
    assert outcome == case.expect
    if case.expect == "allowed":
        assert forwarded == case.forwarded
    if case.expect == "denied":
        assert policy_id == case.policy
