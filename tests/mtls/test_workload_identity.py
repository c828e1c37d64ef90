"""The agent's workload certificate: joining with a token, renewal at half-life, re-issue on a CA rotation,
and an unreachable control plane, all with real agents, real TLS and real sockets."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from meshui.identity.authority import issue, load_csr
from meshui.identity.spiffe import SpiffeId
from proxyagent.agent import AgentConfig
from proxyagent.tls.certificates import WorkloadCertificates
from proxyagent.tls.material import CertificateError, WorkloadCertificate, make_csr, new_key
from proxyagent.tls.spiffe import peer_id
from tests.mtls.conftest import MtlsMesh, TwoSidecars, server_certificate_serial, workload_certificate
from tests.mtls.fake_control_plane import TestCa
from tests.proxyagent.mesh_harness import request, scrape
from tests.waiting import until

WEB = "spiffe://cluster.local/ns/shop/sa/web"
REVIEWS = "spiffe://cluster.local/ns/shop/sa/reviews"


def _metric(agent: Any, name: str, **labels: str) -> float:
    total = 0.0
    for line in scrape(agent).splitlines():
        # Unlabelled series print as "name value", labelled ones as "name{...} value".
        if line.split("{", 1)[0].split(" ", 1)[0] == name and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _server_spans(control: Any) -> list[dict[str, Any]]:
    spans = []
    for export in list(control.spans):
        assert isinstance(export, trace_service_pb2.ExportTraceServiceRequest)
        for resource_spans in export.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if span.kind == 2:  # SERVER
                        spans.append({kv.key: kv.value.string_value for kv in span.attributes})
    return spans


def test_agents_join_with_a_token_and_call_each_other_over_mutual_tls(two_sidecars: TwoSidecars) -> None:
    env, web, reviews = two_sidecars.env, two_sidecars.web, two_sidecars.reviews
    assert sorted((credential, spiffe_id) for credential, spiffe_id, _ in env.control.issued) == [
        ("join_token", REVIEWS),
        ("join_token", WEB),
    ]
    assert web.certificates is not None
    assert web.certificates.current is not None
    assert web.certificates.current.spiffe_id == WEB
    registered = {r.request.service: r.request for r in env.control.agents.values()}
    assert registered["web"].admin_mtls, "pushes must present a certificate"
    assert registered["reviews"].admin_mtls

    assert two_sidecars.echo()["headers"]["x-mesh-source-workload"] == "web-v1"
    assert _metric(reviews, "mesh_requests_total", direction="inbound", mtls="true", source_workload="web-v1") == 1
    assert _metric(reviews, "mesh_requests_total", mtls="false") == 0
    assert _metric(web, "mesh_requests_total", direction="outbound", mtls="true") == 1
    # The server span names the caller's verified identity (exported to the control plane over its TLS).
    spans = until(lambda: _server_spans(env.control), "reviews' server span reached the control plane")
    assert spans[0]["mesh.peer.principal"] == WEB


def test_the_certificate_renews_at_half_life_and_a_request_in_flight_survives(
    mtls: MtlsMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Six-second certificates, valid from a tenth of a second ago: each agent renews about every 3 s.
    monkeypatch.setattr("meshui.identity.authority.BACKDATE", dt.timedelta(milliseconds=100))
    mtls.control.certificate_ttl = dt.timedelta(seconds=6)
    reviews = mtls.agent("reviews", mtls.app.port)
    web = mtls.agent("web")
    until(lambda: web.ready() and reviews.ready() and mtls.applied(web), "both agents registered")
    assert web.certificates is not None
    assert reviews.certificates is not None
    first_web, first_reviews = web.certificates.current, reviews.certificates.current
    assert first_web is not None
    assert first_reviews is not None
    # X.509 times are whole seconds: six seconds from now less a tenth is a validity of six or seven seconds.
    lifetime = first_web.not_after - first_web.not_before
    assert lifetime in (6.0, 7.0)
    assert first_web.renew_at - first_web.not_before == lifetime / 2

    # A request held in the app on a connection made with the first certificates.
    entered, gate = mtls.app.gate("long")
    answer: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: answer.update(
            zip(
                ("status", "headers", "body"),
                request(web.ports["outbound"], "/gate?name=long", host="reviews"),
                strict=True,
            )
        )
    )
    caller.start()
    until(entered.is_set, "the long request reached the app")

    until(
        lambda: web.certificates.issued_total >= 2 and reviews.certificates.issued_total >= 2,  # type: ignore[union-attr]
        "both agents renewed",
    )
    renewals = [(credential, spiffe_id) for credential, spiffe_id, _ in mtls.control.issued if credential == "renewal"]
    assert ("renewal", WEB) in renewals, mtls.control.issued
    assert ("renewal", REVIEWS) in renewals, mtls.control.issued
    current = reviews.certificates.current
    assert current is not None
    assert current.serial != first_reviews.serial
    assert current.key is not first_reviews.key
    # New connections get the new certificate...
    client = mtls.control.ca.credentials(SpiffeId("cluster.local", "shop", "tester"))
    serial = server_certificate_serial(reviews.ports["inbound"], mtls.control.ca.bundle_pem, client)
    assert serial in {serial for _, spiffe_id, serial in mtls.control.issued if spiffe_id == REVIEWS}
    assert serial != first_reviews.serial
    # ...and new calls through the mesh work beside the one still in flight...
    status, _, body = request(web.ports["outbound"], "/echo", host="reviews")
    assert status == 200, body
    assert caller.is_alive(), "the long request is still waiting in the app"
    # ...which was not dropped: it finishes on its first-certificate connection.
    gate.set()
    caller.join(timeout=20)
    assert answer["status"] == 200, answer


def test_a_ca_rotation_in_a_snapshot_makes_agents_reissue_from_the_new_root(two_sidecars: TwoSidecars) -> None:
    env, web, reviews = two_sidecars.env, two_sidecars.web, two_sidecars.reviews
    assert two_sidecars.echo()
    old_root = env.control.ca.signer.certificate
    env.control.ca.rotate()
    env.control.bump()  # the snapshot now carries the bundle with the new root first

    def reissued(agent: Any) -> bool:
        current = agent.certificates.current
        return bool(current.chains_to_signing_root and current.bundle[0] != old_root)

    until(lambda: reissued(web) and reissued(reviews), "both agents re-issued from the new root")
    assert sum(1 for credential, _, _ in env.control.issued if credential == "renewal") >= 2

    # Every connection from now on is made with certificates from the new root, trusting both roots.
    async def forget_idle_connections() -> None:
        for agent in (web, reviews):
            assert agent.outbound is not None
            agent.outbound.pool.close()
            for relay in agent._relays:
                relay.close()

    env.run(forget_idle_connections())
    assert two_sidecars.echo()


def test_an_unreachable_control_plane_at_renewal_is_retried_and_the_certificate_kept(
    two_sidecars: TwoSidecars,
) -> None:
    env, web = two_sidecars.env, two_sidecars.web
    certificates = web.certificates
    assert certificates is not None
    before = certificates.current
    env.control.issuing = False
    certificates.request_renewal()
    until(lambda: certificates.failures_total >= 2, "the renewal failed and was retried")
    assert certificates.current is before, "still serving with the current certificate"
    assert two_sidecars.echo()
    assert _metric(web, "mesh_certificate_failures_total") >= 2
    env.control.issuing = True
    until(lambda: certificates.current is not before, "renewed once the control plane answers again")
    assert env.control.issued[-1][:2] == ("renewal", WEB)
    assert two_sidecars.echo()


async def test_a_certificate_is_due_at_half_life_by_the_injected_clock() -> None:
    ca = TestCa()
    key = new_key()
    issued = issue(
        ca.signer,
        load_csr(make_csr(key, WEB)),
        SpiffeId("cluster.local", "shop", "web"),
        now=dt.datetime.now(dt.UTC),
        ttl=dt.timedelta(hours=24),
    )
    now = [0.0]
    certificates = WorkloadCertificates(WEB, join_token="t", clock=lambda: now[0])
    assert certificates.due, "no certificate yet"
    certificates._install(WorkloadCertificate.build(key, issued.chain_pem, ca.bundle_pem, WEB))
    current = certificates.current
    assert current is not None
    lifetime = current.not_after - current.not_before
    now[0] = current.not_before + lifetime * 0.49
    assert not certificates.due
    now[0] = current.not_before + lifetime * 0.5
    assert certificates.due
    # A certificate for another key, or naming another identity, is never installed.
    with pytest.raises(CertificateError, match="not for this agent's key"):
        WorkloadCertificate.build(new_key(), issued.chain_pem, ca.bundle_pem, WEB)
    with pytest.raises(CertificateError, match="names"):
        WorkloadCertificate.build(key, issued.chain_pem, ca.bundle_pem, REVIEWS)
    with pytest.raises(CertificateError, match="does not chain"):
        WorkloadCertificate.build(key, issued.chain_pem, TestCa().bundle_pem, WEB)


def test_the_inbound_side_verifies_the_caller_and_sends_no_session_ticket() -> None:
    """Pooled connections are never resumed: a ticket would only cost both sides work on every handshake."""
    ca = TestCa()
    server_bio, client_bio = (ssl.MemoryBIO(), ssl.MemoryBIO()), (ssl.MemoryBIO(), ssl.MemoryBIO())
    server = workload_certificate(ca, REVIEWS).server_context().wrap_bio(*server_bio, server_side=True)
    client = workload_certificate(ca, WEB).client_context().wrap_bio(*client_bio)
    done = {server: False, client: False}
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
        client_bio[0].write(server_bio[1].read())
        server_bio[0].write(client_bio[1].read())
        if all(done.values()):
            break
    assert all(done.values()), "the handshake did not complete"
    assert client.version() == "TLSv1.3"
    assert peer_id(server.getpeercert()) == WEB
    with pytest.raises(ssl.SSLWantReadError):
        client.read(1)  # takes in whatever the server sent after its handshake
    session = client.session
    assert session is not None
    assert not session.has_ticket


def test_a_new_agent_without_the_bundle_cannot_be_fooled_into_sending_its_token(mtls: MtlsMesh) -> None:
    """The join token goes only to a control plane whose certificate chains to --trust-bundle."""
    stranger = TestCa()
    agent = mtls.agent("web", trust_bundle=stranger.bundle_pem)
    assert agent.certificates is not None
    until(lambda: agent.certificates.failures_total >= 1, "issuance failed")  # type: ignore[union-attr]
    assert agent.certificates.current is None
    assert mtls.control.issued == [], "the control plane never saw the token"
    assert not agent.ready()


def test_the_agent_refuses_to_start_mtls_without_what_it_needs() -> None:
    bundle = TestCa().bundle_pem
    with pytest.raises(ValueError, match="join token"):
        AgentConfig(service="web", namespace="shop", app_port=1, mtls=True, trust_bundle=bundle).check()
    with pytest.raises(ValueError, match="not PEM certificates"):
        AgentConfig(service="web", namespace="shop", app_port=1, join_token="t", trust_bundle=b"junk").check()
    with pytest.raises(ValueError, match="trust-bundle"):
        AgentConfig(service="web", namespace="shop", app_port=1, join_token="t").check()
    with pytest.raises(ValueError, match="control plane"):
        AgentConfig(service="web", namespace="shop", app_port=1, join_token="t", control_plane="").check()
    assert not AgentConfig(service="web", namespace="shop", app_port=1).mtls_enabled
    assert AgentConfig(service="web", namespace="shop", app_port=1, join_token="t").mtls_enabled
