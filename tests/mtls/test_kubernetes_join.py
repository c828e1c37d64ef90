"""Cluster mode: an agent joins with its pod's projected service-account token instead of a join token, and reads
the token file anew at each join (the kubelet rewrites it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from proxyagent.agent import AgentConfig
from proxyagent.protocol.v1 import control_pb2
from tests.mtls.conftest import MtlsMesh, mtls_mesh
from tests.mtls.fake_control_plane import FakeControlPlane
from tests.mtls.test_workload_identity import REVIEWS, _metric
from tests.waiting import until


@dataclass
class ClusterControlPlane(FakeControlPlane):
    """The fake control plane with a TokenReview stand-in: known service-account tokens and who they are."""

    service_account_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    tokens_seen: list[str] = field(default_factory=list)

    async def IssueCertificate(  # noqa: N802
        self, request: control_pb2.IssueCertificateRequest, context: Any
    ) -> control_pb2.IssueCertificateResponse:
        if not request.kubernetes_token:
            return await super().IssueCertificate(request, context)
        self.tokens_seen.append(request.kubernetes_token)
        account = self.service_account_tokens.get(request.kubernetes_token)
        if account is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the TokenReview did not authenticate the token")
            raise AssertionError("abort raises")
        # Issued as the join token for that account would be, then recorded under the credential really used.
        joined = control_pb2.IssueCertificateRequest(
            agent_id=request.agent_id, csr_pem=request.csr_pem, join_token=self.join_token(*account)
        )
        reply = await super().IssueCertificate(joined, context)
        _, spiffe_id, serial = self.issued.pop()
        self.issued.append(("kubernetes_token", spiffe_id, serial))
        return reply


@pytest.fixture
def cluster() -> Iterator[MtlsMesh]:
    with mtls_mesh(ClusterControlPlane()) as env:
        yield env


def test_an_agent_joins_with_its_service_account_token_read_from_the_file_at_each_try(
    cluster: MtlsMesh, tmp_path: Path
) -> None:
    control = cluster.control
    assert isinstance(control, ClusterControlPlane)
    control.service_account_tokens["projected-token-2"] = ("shop", "reviews")
    token_file = tmp_path / "token"
    token_file.write_text("projected-token-1\n")  # one the API server does not (or no longer) accept
    reviews = cluster.agent("reviews", cluster.app.port, join_token="", kubernetes_token_file=str(token_file))

    until(lambda: _metric(reviews, "mesh_certificate_failures_total") >= 1, "the first join was refused")
    assert not reviews.ready()
    assert reviews.certificates is not None
    assert reviews.certificates.current is None
    # The kubelet rotates the token: the next try reads the new one.
    token_file.write_text("projected-token-2\n")
    until(reviews.ready, "the agent joined with the rotated token", deadline_s=30.0)
    assert control.tokens_seen[0] == "projected-token-1"
    assert control.tokens_seen[-1] == "projected-token-2"
    assert [(credential, spiffe_id) for credential, spiffe_id, _ in control.issued] == [("kubernetes_token", REVIEWS)]
    assert _metric(reviews, "mesh_certificates_issued_total", credential="kubernetes_token") == 1


def test_a_refused_join_token_gives_way_to_the_service_account_token(cluster: MtlsMesh, tmp_path: Path) -> None:
    control = cluster.control
    assert isinstance(control, ClusterControlPlane)
    control.service_account_tokens["projected-token"] = ("shop", "reviews")
    token_file = tmp_path / "token"
    token_file.write_text("projected-token\n")
    # A join token the control plane no longer knows (expired, or revoked), beside the pod's service-account token.
    reviews = cluster.agent(
        "reviews", cluster.app.port, join_token="meshjoin_expired", kubernetes_token_file=str(token_file)
    )

    until(reviews.ready, "the agent joined with its service-account token")
    assert control.tokens_seen == ["projected-token"]
    assert [(credential, spiffe_id) for credential, spiffe_id, _ in control.issued] == [("kubernetes_token", REVIEWS)]
    assert _metric(reviews, "mesh_certificate_failures_total") == 0  # one try, two credentials


def test_mutual_tls_needs_a_token_of_either_kind() -> None:
    base: dict[str, Any] = {
        "service": "reviews",
        "namespace": "shop",
        "app_port": 1,
        "control_plane": "127.0.0.1:1",
        "trust_bundle": b"",
    }
    assert AgentConfig(**base, kubernetes_token_file="/var/run/secrets/tokens/meshui").mtls_enabled
    assert not AgentConfig(**base).mtls_enabled
    with pytest.raises(ValueError, match=r"--join-token.*--kubernetes-token-file"):
        AgentConfig(**base, mtls=True).check()
