"""MeshControl over TLS: an agent bootstraps with a join token, renews with its certificate, and nobody gets
an identity their credential does not grant. Real gRPC on loopback, real TLS."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from asgiref.sync import sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from meshui.catalog.models import Namespace
from meshui.identity.authority import new_root
from meshui.identity.issuance import bundle_pem, ca_store
from meshui.identity.models import JoinToken
from meshui.meshcontrol.server import MeshControlServer
from proxyagent.protocol.v1 import control_pb2, control_pb2_grpc
from tests.identity.test_certificate_authority import csr_for

pytestmark = pytest.mark.django_db(transaction=True)

REVIEWS = "spiffe://cluster.local/ns/alpha/sa/reviews"


@pytest.fixture
async def control_plane(settings: Any) -> AsyncIterator[str]:
    settings.MESH_GRPC_TLS = True
    settings.MESH_GRPC_TLS_HOSTS = ("localhost", "127.0.0.1")
    server = MeshControlServer("127.0.0.1:0")
    port = await server.start()
    yield f"localhost:{port}"
    await server.stop(grace=0)


def trusted() -> bytes:
    return bundle_pem(ca_store(), timezone.now())


async def new_token(service_account: str = "reviews") -> str:
    def make() -> str:
        namespace, _ = Namespace.objects.get_or_create(name="alpha")
        return JoinToken.issue(namespace, service_account, timezone.now() + dt.timedelta(hours=1))[1]

    return await sync_to_async(make)()


async def call(target: str, request: control_pb2.IssueCertificateRequest, roots: bytes) -> Any:
    async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots)) as channel:
        return await control_pb2_grpc.MeshControlStub(channel).IssueCertificate(request, timeout=10)


async def test_an_agent_bootstraps_then_renews_over_tls(control_plane: str) -> None:
    roots = await sync_to_async(trusted)()
    csr, key = csr_for([REVIEWS])
    first = await call(
        control_plane,
        control_pb2.IssueCertificateRequest(agent_id="r-1", csr_pem=csr, join_token=await new_token()),
        roots,
    )
    assert first.spiffe_id == REVIEWS
    assert first.trust_bundle_pem == roots
    leaf = x509.load_pem_x509_certificates(first.certificate_chain_pem)[0]
    assert int(leaf.not_valid_after_utc.timestamp()) == first.not_after_unix

    renewal_csr, _ = csr_for([])
    renewed = await call(
        control_plane,
        control_pb2.IssueCertificateRequest(
            agent_id="r-1",
            csr_pem=renewal_csr,
            current_certificate_chain_pem=first.certificate_chain_pem,
            proof_of_possession=key.sign(renewal_csr, ec.ECDSA(hashes.SHA256())),
        ),
        roots,
    )
    assert renewed.spiffe_id == REVIEWS


async def test_the_control_plane_proves_its_own_identity(control_plane: str) -> None:
    roots = await sync_to_async(trusted)()
    csr, _ = csr_for([REVIEWS])
    request = control_pb2.IssueCertificateRequest(csr_pem=csr, join_token=await new_token())
    # A client trusting another CA refuses the handshake: nobody can pose as the control plane.
    other = new_root("cluster.local", timezone.now()).certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(control_plane, request, other)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # The real bundle verifies it, and the certificate names the control plane and the host dialled.
    assert (await call(control_plane, request, roots)).spiffe_id == REVIEWS
    host, port = control_plane.rsplit(":", 1)
    context = ssl.create_default_context(cadata=roots.decode())
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert tls.version() == "TLSv1.3"
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/mesh-system/sa/meshui-control"
    ]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


@pytest.mark.parametrize(
    ("uris", "service_account", "code"),
    [
        (["spiffe://cluster.local/ns/alpha/sa/admin"], "reviews", grpc.StatusCode.PERMISSION_DENIED),
        ([REVIEWS], "reviews", None),
        ([], "", grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["identity-not-granted", "granted", "unnamed-with-namespace-token"],
)
async def test_what_a_token_does_not_grant_is_refused_with_a_status(
    control_plane: str, uris: list[str], service_account: str, code: grpc.StatusCode | None
) -> None:
    roots = await sync_to_async(trusted)()
    csr, _ = csr_for(uris)
    request = control_pb2.IssueCertificateRequest(csr_pem=csr, join_token=await new_token(service_account))
    if code is None:
        assert (await call(control_plane, request, roots)).spiffe_id == REVIEWS
        return
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(control_plane, request, roots)
    assert refused.value.code() == code


async def test_a_request_without_credentials_is_unauthenticated(control_plane: str) -> None:
    roots = await sync_to_async(trusted)()
    csr, _ = csr_for([REVIEWS])
    for request, code in [
        (control_pb2.IssueCertificateRequest(csr_pem=csr), grpc.StatusCode.UNAUTHENTICATED),
        (
            control_pb2.IssueCertificateRequest(csr_pem=csr, join_token="meshjoin_x_y"),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        # Outside cluster mode a service-account token proves nothing.
        (control_pb2.IssueCertificateRequest(csr_pem=csr, kubernetes_token="eyJ"), grpc.StatusCode.PERMISSION_DENIED),
        (
            control_pb2.IssueCertificateRequest(csr_pem=b"junk", join_token=await new_token()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(control_plane, request, roots)
        assert refused.value.code() == code, request
