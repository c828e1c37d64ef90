"""Cluster mode: an agent proves its identity with its pod's projected service-account token.

The control plane asks the Kubernetes API server with a TokenReview through the real
``kubernetes`` client, over HTTPS, to a stand-in API server on loopback that answers
TokenReviews the way kube-apiserver does; the agent's side is real gRPC over TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from asgiref.sync import sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshui.catalog.models import Namespace
from meshui.identity.models import IssuedCertificate
from meshui.meshcontrol.server import MeshControlServer
from proxyagent.protocol.v1 import control_pb2
from tests.identity.test_certificate_authority import csr_for
from tests.identity.test_issuance_over_grpc import call, trusted

pytestmark = pytest.mark.django_db(transaction=True)

# What the control plane's own service account would present to the API server.
CONTROL_PLANE_BEARER = "control-plane-sa-token"
REVIEWS = "spiffe://cluster.local/ns/alpha/sa/reviews"


@dataclass
class ApiServer:
    """Tokens it knows: token -> (username, audiences it was minted for)."""

    tokens: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # Answer every review with this status instead (an API server refusing the control plane).
    fail_with: int = 0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "apiserver.crt", directory / "apiserver.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _handler(state: ApiServer) -> type[BaseHTTPRequestHandler]:
    class TokenReviews(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                self._answer(404, {"kind": "Status", "code": 404})
                return
            if self.headers.get("Authorization") != f"Bearer {CONTROL_PLANE_BEARER}":
                self._answer(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                return
            if state.fail_with:
                self._answer(state.fail_with, {"kind": "Status", "code": state.fail_with, "reason": "Forbidden"})
                return
            state.reviews.append(review)
            spec = review["spec"]
            wanted = spec.get("audiences") or []
            known = state.tokens.get(spec["token"])
            status: dict[str, Any] = {"authenticated": False}
            if known is not None and (not wanted or set(wanted) & set(known[1])):
                username, audiences = known
                status = {
                    "authenticated": True,
                    "user": {"username": username, "groups": ["system:serviceaccounts"]},
                    "audiences": [a for a in audiences if a in wanted] if wanted else audiences,
                }
            self._answer(201, {**review, "status": status})

    return TokenReviews


@pytest.fixture
def api_server(tmp_path: Path, settings: Any) -> Iterator[ApiServer]:
    state = ApiServer()
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "test",
                        "cluster": {
                            "server": f"https://127.0.0.1:{server.server_address[1]}",
                            "certificate-authority": str(cert),
                        },
                    }
                ],
                "users": [{"name": "meshui", "user": {"token": CONTROL_PLANE_BEARER}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "meshui"}}],
                "current-context": "test",
            }
        )
    )
    settings.MESH_KUBERNETES_TOKENS = True
    settings.MESH_KUBECONFIG = str(kubeconfig)
    settings.MESH_KUBERNETES_TOKEN_AUDIENCE = "meshui"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
async def control_plane(settings: Any, api_server: ApiServer) -> AsyncIterator[str]:
    settings.MESH_GRPC_TLS = True
    settings.MESH_GRPC_TLS_HOSTS = ("localhost", "127.0.0.1")
    await sync_to_async(Namespace.objects.get_or_create)(name="alpha")
    server = MeshControlServer("127.0.0.1:0")
    port = await server.start()
    yield f"localhost:{port}"
    await server.stop(grace=0)


async def test_a_pod_token_for_our_audience_gets_its_service_accounts_identity(
    control_plane: str, api_server: ApiServer
) -> None:
    api_server.tokens["pod-token"] = ("system:serviceaccount:alpha:reviews", ["meshui"])
    roots = await sync_to_async(trusted)()
    csr, _ = csr_for([])
    issued = await call(
        control_plane,
        control_pb2.IssueCertificateRequest(agent_id="reviews-1", csr_pem=csr, kubernetes_token="pod-token"),
        roots,
    )
    assert issued.spiffe_id == REVIEWS
    # The review asked for our audience only, so a token minted for anything else cannot pass.
    assert [review["spec"]["audiences"] for review in api_server.reviews] == [["meshui"]]
    record = await sync_to_async(IssuedCertificate.objects.get)(agent_id="reviews-1")
    assert (record.spiffe_id, record.credential) == (REVIEWS, "kubernetes")


@pytest.mark.parametrize(
    ("known", "asked_for", "message"),
    [
        # Minted for the API server, not for us.
        (("system:serviceaccount:alpha:reviews", ["https://kubernetes.default.svc"]), [], "does not vouch"),
        # Not a token the API server knows at all.
        (None, [], "does not vouch"),
        # A person's token, not a service account's.
        (("alice@example.com", ["meshui"]), [], "does not vouch"),
        # The token is reviews's; the CSR asks for admin.
        (("system:serviceaccount:alpha:reviews", ["meshui"]), ["spiffe://cluster.local/ns/alpha/sa/admin"], "only"),
    ],
)
async def test_a_token_never_yields_more_than_its_service_account(
    control_plane: str, api_server: ApiServer, known: tuple[str, list[str]] | None, asked_for: list[str], message: str
) -> None:
    if known is not None:
        api_server.tokens["pod-token"] = known
    roots = await sync_to_async(trusted)()
    csr, _ = csr_for(asked_for)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(control_plane, control_pb2.IssueCertificateRequest(csr_pem=csr, kubernetes_token="pod-token"), roots)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert message in (refused.value.details() or "")
    assert not await sync_to_async(IssuedCertificate.objects.exists)()


async def test_an_api_server_that_refuses_the_control_plane_issues_nothing(
    control_plane: str, api_server: ApiServer
) -> None:
    api_server.tokens["pod-token"] = ("system:serviceaccount:alpha:reviews", ["meshui"])
    api_server.fail_with = 403
    roots = await sync_to_async(trusted)()
    csr, _ = csr_for([])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(control_plane, control_pb2.IssueCertificateRequest(csr_pem=csr, kubernetes_token="pod-token"), roots)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "could not be checked" in (refused.value.details() or "")
    api_server.fail_with = 0
    issued = await call(
        control_plane, control_pb2.IssueCertificateRequest(csr_pem=csr, kubernetes_token="pod-token"), roots
    )
    assert issued.spiffe_id == REVIEWS
