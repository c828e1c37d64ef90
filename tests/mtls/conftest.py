"""Agents with workload certificates from a fake control plane (its own CA, TLS), around a sample app."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from meshui.identity.authority import issue, load_csr
from meshui.identity.spiffe import SpiffeId
from proxyagent.agent import Agent
from proxyagent.tls.material import WorkloadCertificate, make_csr, new_key
from tests.mtls.fake_control_plane import Credentials, FakeControlPlane, TestCa
from tests.proxyagent.conftest import data_path  # noqa: F401 - the same two data paths, for tests here too
from tests.proxyagent.mesh_harness import Mesh, mesh, request
from tests.proxyagent.sample_app import AppServer, running_app
from tests.waiting import until


@dataclass
class MtlsMesh:
    mesh: Mesh
    control: FakeControlPlane
    app: AppServer

    def agent(self, service: str, app_port: int = 1, **overrides: Any) -> Agent:
        """An agent in mTLS mode, joining as ``spiffe://cluster.local/ns/shop/sa/<service>``."""
        settings: dict[str, Any] = {
            "control_plane": self.control.address,
            "trust_bundle": self.control.ca.bundle_pem,
            "join_token": self.control.join_token("shop", service),
            "service_account": service,
            "metrics_interval_s": 3600.0,  # the fake control plane has no metrics receiver
        }
        return self.mesh.agent(service, app_port, **{**settings, **overrides})

    def run(self, coro: Any) -> Any:
        return self.mesh.loop.run(coro)

    def applied(self, agent: Agent) -> bool:
        """Whether ``agent`` holds the fake control plane's current version."""
        return agent.store.version >= self.control.version


@pytest.fixture
def mtls() -> Iterator[MtlsMesh]:
    with mtls_mesh(FakeControlPlane()) as env:
        yield env


@contextlib.contextmanager
def mtls_mesh(control: FakeControlPlane) -> Iterator[MtlsMesh]:
    """``control`` started, a sample app for ``reviews``, and a mesh whose agents stop at the end."""
    with running_app("reviews-app") as app, mesh() as built:
        built.loop.run(control.start())
        try:
            yield MtlsMesh(built, control, app)
        finally:
            for agent in list(built.agents):
                built.loop.run(agent.stop())
            built.agents.clear()
            built.loop.run(control.stop())


@dataclass
class TwoSidecars:
    env: MtlsMesh
    web: Agent
    reviews: Agent

    def get(self, path: str = "/echo") -> tuple[int, dict[str, str], bytes]:
        return request(self.web.ports["outbound"], path, host="reviews")

    def echo(self) -> dict[str, Any]:
        status, _, body = self.get()
        assert status == 200, body
        return dict(json.loads(body))


@pytest.fixture
def two_sidecars(mtls: MtlsMesh) -> TwoSidecars:
    """web's sidecar calling reviews' sidecar over mutual TLS, both registered and holding each other."""
    reviews = mtls.agent("reviews", mtls.app.port)
    web = mtls.agent("web")
    until(lambda: web.ready() and reviews.ready() and mtls.applied(web), "both agents registered")
    return TwoSidecars(mtls, web, reviews)


def tls_client_context(credentials: Credentials | None, bundle_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.3 client context presenting ``credentials`` (a test's own caller) and trusting ``bundle_pem``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cadata=bundle_pem.decode())
    if credentials is not None:
        # A test's throwaway key: a temporary file is fine here (the agent never writes its own).
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".pem") as file:
            file.write(credentials.chain_pem + credentials.key_pem)
            file.flush()
            context.load_cert_chain(file.name)
    return context


def tls_get(port: int, context: ssl.SSLContext, path: str = "/echo") -> tuple[int, bytes, dict[str, Any]]:
    """A request over TLS to an agent's inbound port: (status, body, the server's certificate)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": "reviews", "x-mesh-source-workload": "tester-v1"})
        response = conn.getresponse()
        assert conn.sock is not None
        peer = conn.sock.getpeercert()
        return response.status, response.read(), peer or {}
    finally:
        conn.close()


def server_certificate_serial(port: int, bundle_pem: bytes, credentials: Credentials) -> str:
    """The serial of the certificate an agent's inbound listener presents to a new connection (hex)."""
    context = tls_client_context(credentials, bundle_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def workload_certificate(ca: TestCa, spiffe_id: str, bundle_pem: bytes | None = None) -> WorkloadCertificate:
    """What an agent holds once ``ca`` issued it ``spiffe_id`` (trusting ``bundle_pem``, by default ``ca``'s)."""
    key = new_key()
    issued = issue(
        ca.signer, load_csr(make_csr(key, spiffe_id)), SpiffeId.parse(spiffe_id),
        now=dt.datetime.now(dt.UTC), ttl=dt.timedelta(hours=1),
    )  # fmt: skip
    return WorkloadCertificate.build(key, issued.chain_pem, bundle_pem or ca.bundle_pem, spiffe_id)
