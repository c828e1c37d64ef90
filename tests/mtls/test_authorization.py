"""Authorization enforced by real sidecars over mutual TLS: the callee's agent decides on the caller's verified
identity, forwards exactly the path it authorized, and counts, traces and explains each denial."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshui.catalog.models import Namespace
from meshui.identity.spiffe import SpiffeId
from meshui.policy.compile import inbound_policy
from meshui.policy.models import Policy, PolicyKind
from meshui.policy.validation import validate_authorization_policy
from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from proxyagent.mesh_errors import MeshError, MeshErrorCode
from proxyagent.protocol.v1 import snapshot_pb2
from proxyagent.routers import InboundRouter
from tests.mtls.conftest import TwoSidecars, tls_client_context, tls_get
from tests.mtls.test_workload_identity import WEB, _metric, _server_spans
from tests.proxyagent.mesh_harness import request
from tests.waiting import until

TESTER = SpiffeId("cluster.local", "shop", "tester")
DENY_ALL = (PolicyKind.AUTHORIZATION_DEFAULT, "default", "", {"default": "deny-all"})
WEB_READS_ECHO = (
    PolicyKind.AUTHORIZATION,
    "web-reads-echo",
    "reviews",
    {
        "action": "ALLOW",
        "rules": [{"from": {"principals": [WEB]}, "to": {"methods": ["GET"], "paths": [{"prefix": "/echo"}]}}],
    },
)


def _lock_down(env: Any, *agents: Any, policies: tuple[tuple[PolicyKind, str, str, dict[str, Any]], ...]) -> None:
    """Push ``policies`` (namespace shop, validated and compiled as the control plane does) and wait for ``agents``."""
    namespace = Namespace(name="shop")
    rows = []
    for kind, name, service, spec in policies:
        if kind == PolicyKind.AUTHORIZATION:
            spec, _ = validate_authorization_policy(spec)
        rows.append(Policy(kind=kind, namespace=namespace, name=name, service=service, spec=spec))
    env.control.inbound = inbound_policy(rows, "reviews")
    env.control.bump()
    until(lambda: all(env.applied(agent) for agent in agents), "the agents applied the policy")


def _denials(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for span in spans if span.get("mesh.error") == "denied"]


def test_only_the_allowed_caller_reaches_the_app_and_at_the_path_that_was_authorized(
    two_sidecars: TwoSidecars,
) -> None:
    env, web, reviews = two_sidecars.env, two_sidecars.web, two_sidecars.reviews
    _lock_down(env, web, reviews, policies=(DENY_ALL, WEB_READS_ECHO))

    # web may GET under /echo; the dot segments are resolved before the rule matches and the app sees the result.
    status, _, body = two_sidecars.get("/echo/a/./b/../c")
    assert status == 200, body
    assert json.loads(body)["path"] == "/echo/a/c"
    # Climbing out of /echo is matched as where it lands, so it falls to the namespace's deny-all default.
    status, headers, body = two_sidecars.get("/echo/../admin")
    assert status == 403, body
    assert headers["x-mesh-error"] == "denied"
    assert headers["x-mesh-policy"] == "shop/default"
    assert json.loads(body)["policy"] == "shop/default"
    # An encoded slash is refused outright (strict mode), before any rule.
    status, headers, body = two_sidecars.get("/echo%2F..%2Fadmin")
    assert (status, headers["x-mesh-error"]) == (400, "bad_request"), body

    # Another workload of the same namespace, with a certificate of the mesh's CA: not in the rule, denied.
    context = tls_client_context(env.control.ca.credentials(TESTER), env.control.ca.bundle_pem)
    status, body, _ = tls_get(reviews.ports["inbound"], context, "/echo")
    assert status == 403, body
    assert json.loads(body)["mesh_error"] == "denied"
    assert [path for _, path, _ in env.app.requests] == ["/echo/a/c"], "no refused request reached the app"

    # Denials are counted on the edge they would have taken, so the graph can paint it.
    assert _metric(reviews, "mesh_requests_denied_total", source_workload="tester-v1", mtls="true") == 1
    assert _metric(reviews, "mesh_requests_denied_total", source_workload="web-v1", mtls="true") == 1
    assert _metric(reviews, "mesh_errors_total", direction="inbound", code="denied") == 2
    # The caller's sidecar counts the refusal it got on its own edge too: the graph draws callers' reports.
    assert _metric(web, "mesh_requests_denied_total", direction="outbound", destination_service="reviews.shop") == 1
    # The trace says why: the server span names the deciding policy and the refused caller.
    until(lambda: len(_denials(_server_spans(env.control))) >= 2, "both denials' server spans were exported")
    denied = {span["mesh.peer.principal"]: span for span in _denials(_server_spans(env.control))}
    assert set(denied) == {WEB, str(TESTER)}
    assert {span["mesh.authz.policy"] for span in denied.values()} == {"shop/default"}
    allowed = [span for span in _server_spans(env.control) if span.get("url.path", "").startswith("/echo/a")]
    assert allowed, "the allowed request's server span was exported"
    assert allowed[0]["mesh.authz.policy"] == "shop/web-reads-echo"


def test_lifting_the_policy_opens_the_gate_without_a_restart(two_sidecars: TwoSidecars) -> None:
    env, web, reviews = two_sidecars.env, two_sidecars.web, two_sidecars.reviews
    _lock_down(env, web, reviews, policies=(DENY_ALL,))
    status, headers, body = two_sidecars.get()
    assert (status, headers["x-mesh-error"]) == (403, "denied"), body
    _lock_down(env, web, reviews, policies=())
    assert two_sidecars.echo()["path"] == "/echo"
    # With nothing to enforce the path is forwarded as sent: normalizing is the gate's, and the gate is open.
    status, _, body = request(web.ports["outbound"], "/echo//twice", host="reviews")
    assert (status, json.loads(body)["path"]) == (200, "/echo//twice")


def test_a_gated_service_lets_only_websocket_upgrades_through(two_sidecars: TwoSidecars) -> None:
    env, web, reviews = two_sidecars.env, two_sidecars.web, two_sidecars.reviews
    _lock_down(env, web, reviews, policies=(DENY_ALL, WEB_READS_ECHO))
    # After an h2c upgrade the tunnel would carry HTTP/2 requests for any path, past the gate.
    status, headers, body = request(web.ports["outbound"], "/echo", host="reviews", Upgrade="h2c", Connection="Upgrade")
    assert (status, headers["x-mesh-error"]) == (400, "bad_request"), body
    assert env.app.requests == []


def _identity() -> AgentIdentity:
    return AgentIdentity("reviews", "shop", "reviews-v1", "127.0.0.1", 15006, 15000)


def _deny_all_snapshot(version: int) -> snapshot_pb2.Snapshot:
    inbound = snapshot_pb2.InboundPolicy(authorization_default=snapshot_pb2.AUTHORIZATION_DEFAULT_DENY_ALL)
    return snapshot_pb2.Snapshot(version=version, inbound=inbound)


def test_in_mtls_mode_the_inbound_side_refuses_calls_until_it_knows_its_policy() -> None:
    store = ConfigStore()
    router = InboundRouter(_identity(), "127.0.0.1", 9080, 5.0, store, fail_closed=True)
    with pytest.raises(MeshError) as caught:
        router.route_parts(b"/echo", b"reviews", b"web-v1", WEB)
    assert (caught.value.code, caught.value.status) == (MeshErrorCode.NO_HEALTHY_UPSTREAM, 503)
    assert store.apply(_deny_all_snapshot(1)) == (True, "")
    target, _ = router.route_parts(b"/echo", b"reviews", b"web-v1", WEB)
    assert target.gate is not None


def test_the_inbound_side_reads_the_newest_policy_even_when_a_change_listener_failed() -> None:
    store = ConfigStore()

    def failing_listener(table: Any) -> None:
        raise RuntimeError("an earlier listener's bug")

    store.on_change(failing_listener)
    router = InboundRouter(_identity(), "127.0.0.1", 9080, 5.0, store)
    assert router.route_parts(b"/echo", b"reviews", b"web-v1", WEB)[0].gate is None
    with pytest.raises(RuntimeError):
        store.apply(_deny_all_snapshot(1))
    assert router.route_parts(b"/echo", b"reviews", b"web-v1", WEB)[0].gate is not None
