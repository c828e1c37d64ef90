"""Mutual TLS between real sidecars on loopback: peer authentication modes, the upstream's identity, who may
call AgentAdmin, and the caller's principal on the inbound side."""

from __future__ import annotations

import http.client
import json
import ssl

import grpc
import pytest

from meshui.identity.spiffe import SpiffeId
from proxyagent.agent import Agent
from proxyagent.http import native_relay
from proxyagent.protocol.v1 import admin_pb2, admin_pb2_grpc, snapshot_pb2
from tests.mtls.conftest import MtlsMesh, TwoSidecars, tls_client_context, tls_get
from tests.mtls.fake_control_plane import Credentials, TestCa
from tests.mtls.test_workload_identity import REVIEWS, WEB, _metric, _server_spans
from tests.waiting import until

TESTER = SpiffeId("cluster.local", "shop", "tester")


def _peer_authentication(env: MtlsMesh, mode: int, *agents: Agent) -> None:
    """Switch the mesh's peer authentication and wait until ``agents`` hold the snapshot saying so."""
    env.control.peer_authentication = mode
    env.control.bump()
    until(lambda: all(env.applied(agent) for agent in agents), "the agents applied the new mode")


def _plaintext_get(agent: Agent) -> tuple[int, bytes]:
    """A plaintext request straight to ``agent``'s inbound port, as a caller outside the mesh would send."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.ports["inbound"], timeout=10)
    try:
        conn.request("GET", "/echo", headers={"Host": "reviews", "x-mesh-source-workload": "old-v1"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_permissive_serves_plaintext_callers_and_mutual_tls_callers_alike(two_sidecars: TwoSidecars) -> None:
    env, reviews = two_sidecars.env, two_sidecars.reviews
    _peer_authentication(env, snapshot_pb2.PEER_AUTHENTICATION_MODE_PERMISSIVE, reviews)
    status, body = _plaintext_get(reviews)
    assert status == 200, body
    assert two_sidecars.echo()
    assert _metric(reviews, "mesh_requests_total", direction="inbound", mtls="false", source_workload="old-v1") == 1
    assert _metric(reviews, "mesh_requests_total", direction="inbound", mtls="true", source_workload="web-v1") == 1
    assert _metric(reviews, "mesh_plaintext_refused_total") == 0


def test_strict_refuses_plaintext_and_counts_it_while_mutual_tls_is_served(two_sidecars: TwoSidecars) -> None:
    env, reviews = two_sidecars.env, two_sidecars.reviews
    _peer_authentication(env, snapshot_pb2.PEER_AUTHENTICATION_MODE_STRICT, reviews)
    for _ in range(2):
        # Closed before a byte of response: http.client sees the connection go.
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            _plaintext_get(reviews)
    assert _metric(reviews, "mesh_plaintext_refused_total") == 2
    assert env.app.requests == [], "nothing plaintext reached the app"
    assert two_sidecars.echo()["headers"]["x-mesh-source-workload"] == "web-v1"
    # A caller of its own with a certificate from the mesh's CA is served too, as itself.
    context = tls_client_context(env.control.ca.credentials(TESTER), env.control.ca.bundle_pem)
    status, body, server = tls_get(reviews.ports["inbound"], context)
    assert status == 200, body
    assert ("URI", REVIEWS) in server["subjectAltName"], "the inbound listener presents reviews' identity"
    assert _metric(reviews, "mesh_requests_total", direction="inbound", mtls="true") == 2


def test_the_callers_principal_is_known_per_request_on_the_inbound_side(two_sidecars: TwoSidecars) -> None:
    env, reviews = two_sidecars.env, two_sidecars.reviews
    assert two_sidecars.echo()
    context = tls_client_context(env.control.ca.credentials(TESTER), env.control.ca.bundle_pem)
    assert tls_get(reviews.ports["inbound"], context)[0] == 200

    def principals() -> set[str]:
        return {span.get("mesh.peer.principal", "") for span in _server_spans(env.control)}

    until(lambda: principals() >= {WEB, str(TESTER)}, "both callers' server spans reached the control plane")
    # Each connection's verified identity is on the connection the request handling reads it from.
    assert reviews.inbound is not None

    async def peers() -> dict[str, bool]:
        connections = reviews.inbound.connections  # type: ignore[union-attr]
        return {getattr(conn, "peer_identity", ""): getattr(conn, "native", False) for conn in connections}

    by_peer = env.run(peers())
    assert WEB in by_peer, "web's pooled connection to reviews names web"
    # Mutual TLS connections are served by the native relay where it is built, as plaintext ones are.
    assert by_peer[WEB] is native_relay.AVAILABLE


def test_a_client_certificate_from_another_ca_is_refused_in_the_handshake(two_sidecars: TwoSidecars) -> None:
    env, reviews = two_sidecars.env, two_sidecars.reviews
    stranger = TestCa()
    context = tls_client_context(stranger.credentials(TESTER), env.control.ca.bundle_pem)
    with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
        tls_get(reviews.ports["inbound"], context)
    until(lambda: _metric(reviews, "mesh_tls_refused_total", direction="inbound", reason="handshake") >= 1, "counted")
    assert env.app.requests == []


def test_an_upstream_presenting_another_identity_is_refused_before_the_request_is_sent(
    two_sidecars: TwoSidecars,
) -> None:
    env, web = two_sidecars.env, two_sidecars.web
    # The control plane says reviews' endpoint must be "payments": reviews' real certificate does not match.
    env.control.identity_overrides["reviews"] = "spiffe://cluster.local/ns/shop/sa/payments"
    env.control.bump()
    until(lambda: env.applied(web), "web applied the snapshot")
    status, headers, body = two_sidecars.get()
    assert (status, headers["x-mesh-error"]) == (503, "upstream_connect_failed")
    detail = json.loads(body)["detail"]
    assert REVIEWS in detail, detail
    assert "spiffe://cluster.local/ns/shop/sa/payments" in detail, detail
    assert env.app.requests == [], "the request never left web's sidecar"
    assert _metric(web, "mesh_tls_refused_total", direction="outbound", reason="identity_mismatch") >= 1
    # Once the snapshot names the right identity again, calls go through.
    del env.control.identity_overrides["reviews"]
    env.control.bump()
    until(lambda: env.applied(web), "web applied the corrected snapshot")
    assert two_sidecars.echo()


def _admin_status(agent: Agent, bundle_pem: bytes, credentials: Credentials | None) -> admin_pb2.AgentStatus:
    """AgentAdmin.GetStatus over TLS, verifying the agent by the DNS name its certificate carries."""
    certificates = agent.certificates
    assert certificates is not None
    spiffe = SpiffeId.parse(certificates.spiffe_id)
    channel_credentials = grpc.ssl_channel_credentials(
        root_certificates=bundle_pem,
        private_key=credentials.key_pem if credentials else None,
        certificate_chain=credentials.chain_pem if credentials else None,
    )
    with grpc.secure_channel(
        f"127.0.0.1:{agent.ports['admin']}",
        channel_credentials,
        options=[("grpc.ssl_target_name_override", spiffe.dns_name)],
    ) as channel:
        reply: admin_pb2.AgentStatus = admin_pb2_grpc.AgentAdminStub(channel).GetStatus(
            admin_pb2.GetStatusRequest(), timeout=10
        )
        return reply


def test_agent_admin_in_mtls_mode_serves_only_the_control_planes_identity(two_sidecars: TwoSidecars) -> None:
    env, web = two_sidecars.env, two_sidecars.web
    bundle = env.control.ca.bundle_pem
    status = _admin_status(web, bundle, env.control.client_credentials())
    assert status.agent_id == web.identity.agent_id  # type: ignore[union-attr]

    with pytest.raises(grpc.RpcError) as refused:
        _admin_status(web, bundle, env.control.ca.credentials(TESTER))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "meshui-control" in (refused.value.details() or "")
    assert web.admin is not None
    assert web.admin.refused_total == 1

    # No client certificate: the handshake itself fails.
    with pytest.raises(grpc.RpcError) as no_certificate:
        _admin_status(web, bundle, None)
    assert no_certificate.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_allowed_admin_client_can_be_overridden(mtls: MtlsMesh) -> None:
    operator = SpiffeId("cluster.local", "ops", "operator")
    agent = mtls.agent("web", control_plane_identity=str(operator))
    until(agent.ready, "the agent registered")
    bundle = mtls.control.ca.bundle_pem
    assert _admin_status(agent, bundle, mtls.control.ca.credentials(operator)).agent_id
    with pytest.raises(grpc.RpcError) as refused:
        _admin_status(agent, bundle, mtls.control.client_credentials())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
