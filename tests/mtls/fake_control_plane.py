"""A small MeshControl server over TLS for the agent's identity and mTLS tests, with a CA of its own.

It signs with the control plane's own certificate code (``meshui.identity.authority``,
pure functions: no database), so agents get the same X.509-SVIDs as from the real
control plane, but a test chooses their lifetime (seconds, where the real one counts
in hours), rotates the CA, overrides an endpoint's expected identity, switches peer
authentication, or makes IssueCertificate unavailable. Registered agents become
endpoints of their service; every change bumps the version, which heartbeats pick up.
Spans exported to it (OTLP over the same TLS port) are kept for inspection.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from meshui.identity.authority import (
    Authority,
    issue,
    issue_server_certificate,
    load_csr,
    new_root,
    verify_chain,
)
from meshui.identity.spiffe import SpiffeId
from proxyagent.protocol.v1 import control_pb2, control_pb2_grpc, snapshot_pb2

TRUST_DOMAIN = "cluster.local"
CONTROL_PLANE_ID = SpiffeId(TRUST_DOMAIN, "mesh-system", "meshui-control")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _with_uris(
    certificate: x509.Certificate, uris: tuple[str, ...], key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """``certificate`` with ``uris`` for URI SANs (its other names, fields and extensions kept), signed by ``key``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(certificate.subject)
        .issuer_name(certificate.issuer)
        .public_key(certificate.public_key())
        .serial_number(certificate.serial_number)
        .not_valid_before(certificate.not_valid_before_utc)
        .not_valid_after(certificate.not_valid_after_utc)
    )
    for extension in certificate.extensions:
        value = extension.value
        if isinstance(value, x509.SubjectAlternativeName):
            others = [name for name in value if not isinstance(name, x509.UniformResourceIdentifier)]
            value = x509.SubjectAlternativeName([*(x509.UniformResourceIdentifier(uri) for uri in uris), *others])
        builder = builder.add_extension(value, extension.critical)
    return builder.sign(key, hashes.SHA256())


@dataclass
class Credentials:
    """A key and the certificate chain issued for it, as PEM (what a test's own TLS client presents)."""

    key_pem: bytes
    chain_pem: bytes


class TestCa:
    """Roots, signing root first (what the bundle lists); ``rotate`` adds a new signing root."""

    __test__ = False  # not a pytest class

    def __init__(self, trust_domain: str = TRUST_DOMAIN) -> None:
        self.trust_domain = trust_domain
        self.roots: list[Authority] = [new_root(trust_domain, _now())]

    @property
    def signer(self) -> Authority:
        return self.roots[0]

    @property
    def bundle_pem(self) -> bytes:
        return _pem([root.certificate for root in self.roots])

    def rotate(self) -> None:
        # Roots are named by their creation time to the second: one made a second "earlier" is named apart.
        self.roots.insert(0, new_root(self.trust_domain, _now() - dt.timedelta(seconds=len(self.roots))))

    def credentials(
        self,
        identity: SpiffeId,
        *,
        hosts: tuple[str, ...] = (),
        ttl: dt.timedelta = dt.timedelta(hours=1),
        now: dt.datetime | None = None,
        uris: tuple[str, ...] | None = None,
        signer: Authority | None = None,
    ) -> Credentials:
        """A fresh key and a certificate for ``identity`` (plus ``hosts``), valid from ``now`` - 1 min for ``ttl``.

        A test making a bad certificate on purpose may replace its URI SANs with ``uris`` (none, several, not
        SPIFFE ids; the DNS names stay) and have it signed by ``signer`` instead of this CA's signing root.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        authority = signer or self.signer
        issued = issue_server_certificate(
            authority, key.public_key(), identity, (identity.dns_name, *hosts), now=now or _now(), ttl=ttl
        )
        if uris is None:
            return Credentials(_key_pem(key), issued.chain_pem)
        leaf = _with_uris(issued.certificate, uris, authority.key)
        return Credentials(_key_pem(key), _pem([leaf, *authority.chain]))


@dataclass
class Registered:
    request: control_pb2.RegisterRequest
    identity: str


@dataclass
class FakeControlPlane(control_pb2_grpc.MeshControlServicer, trace_service_pb2_grpc.TraceServiceServicer):
    ca: TestCa = field(default_factory=TestCa)
    certificate_ttl: dt.timedelta = dt.timedelta(hours=1)
    join_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (namespace, service account)
    peer_authentication: int = snapshot_pb2.PEER_AUTHENTICATION_MODE_PERMISSIVE
    # Authorization and end-user token policy for every agent's own service (peer_authentication set on top).
    inbound: snapshot_pb2.InboundPolicy = field(default_factory=snapshot_pb2.InboundPolicy)
    # The identity a service's endpoints are announced with, when not the one its agents registered with.
    identity_overrides: dict[str, str] = field(default_factory=dict)
    # Where a service's endpoints are announced, when not where its agents registered: (address, port).
    address_overrides: dict[str, tuple[str, int]] = field(default_factory=dict)
    issuing: bool = True  # False: IssueCertificate answers UNAVAILABLE
    # What Register tells agents; short, so tests see a change within a tenth of a second.
    heartbeat_interval_ms: int = 100
    version: int = 1
    agents: dict[str, Registered] = field(default_factory=dict)
    # (credential, SPIFFE id, serial) of every certificate issued.
    issued: list[tuple[str, str, str]] = field(default_factory=list)
    spans: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    port: int = 0
    _server: grpc.aio.Server | None = None
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    # Test-side controls

    def join_token(self, namespace: str = "shop", service_account: str = "default") -> str:
        token = f"meshjoin_test{next(self._tokens)}"
        self.join_tokens[token] = (namespace, service_account)
        return token

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def bump(self) -> None:
        """A change every agent should see (at its next heartbeat)."""
        self.version += 1

    def client_credentials(self) -> Credentials:
        """What the real control plane's pushes present: its own identity, from the mesh's CA."""
        return self.ca.credentials(CONTROL_PLANE_ID)

    async def start(self) -> int:
        server_credentials = self.ca.credentials(CONTROL_PLANE_ID, hosts=("127.0.0.1", "localhost"))
        self._server = grpc.aio.server()
        control_pb2_grpc.add_MeshControlServicer_to_server(self, self._server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_DiscardMetrics(), self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_secure_port(
            "127.0.0.1:0",
            grpc.ssl_server_credentials([(server_credentials.key_pem, server_credentials.chain_pem)]),
        )
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)

    def snapshot(self) -> snapshot_pb2.Snapshot:
        # The version first: a test sets the policy, then bumps; a snapshot read between the two must not
        # carry the new version with the old policy.
        version = self.version
        by_service: dict[tuple[str, str], list[snapshot_pb2.Endpoint]] = {}
        for registered in self.agents.values():
            request = registered.request
            address, port = self.address_overrides.get(request.service, (request.address, request.inbound_port))
            by_service.setdefault((request.service, request.namespace), []).append(
                snapshot_pb2.Endpoint(
                    address=address,
                    port=port,
                    workload=request.workload,
                    labels=dict(request.labels),
                    identity=self.identity_overrides.get(request.service, registered.identity),
                )
            )
        inbound = snapshot_pb2.InboundPolicy()
        inbound.CopyFrom(self.inbound)
        inbound.peer_authentication = self.peer_authentication  # type: ignore[assignment]
        return snapshot_pb2.Snapshot(
            version=version,
            destinations=[
                snapshot_pb2.Destination(service=service, namespace=namespace, endpoints=endpoints)
                for (service, namespace), endpoints in sorted(by_service.items())
            ],
            inbound=inbound,
            trust_bundle_pem=self.ca.bundle_pem,
        )

    # MeshControl

    async def IssueCertificate(  # noqa: N802
        self, request: control_pb2.IssueCertificateRequest, context: Any
    ) -> control_pb2.IssueCertificateResponse:
        if not self.issuing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the test made the CA unavailable")
        csr = load_csr(bytes(request.csr_pem))
        now = _now()
        if request.join_token:
            granted = self.join_tokens.get(request.join_token)
            if granted is None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "unknown join token")
                raise AssertionError("abort raises")
            identity = SpiffeId(self.ca.trust_domain, *granted)
            credential = "join_token"
        else:
            leaf, *intermediates = x509.load_pem_x509_certificates(bytes(request.current_certificate_chain_pem))
            try:
                verify_chain(leaf, intermediates, [root.certificate for root in self.ca.roots])
                public_key = leaf.public_key()
                if not isinstance(public_key, ec.EllipticCurvePublicKey):
                    raise ValueError("workload keys are ECDSA")
                public_key.verify(bytes(request.proof_of_possession), bytes(request.csr_pem), ec.ECDSA(hashes.SHA256()))
            except (ValueError, InvalidSignature):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad renewal credential")
            if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the current certificate has expired")
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            identity = SpiffeId.parse(san.get_values_for_type(x509.UniformResourceIdentifier)[0])
            credential = "renewal"
        issued = issue(self.ca.signer, csr, identity, now=now, ttl=self.certificate_ttl)
        self.issued.append((credential, str(identity), issued.serial_hex))
        return control_pb2.IssueCertificateResponse(
            certificate_chain_pem=issued.chain_pem,
            trust_bundle_pem=self.ca.bundle_pem,
            spiffe_id=str(identity),
            not_after_unix=int(issued.certificate.not_valid_after_utc.timestamp()),
        )

    async def Register(  # noqa: N802
        self, request: control_pb2.RegisterRequest, context: Any
    ) -> control_pb2.RegisterResponse:
        identity = str(SpiffeId(self.ca.trust_domain, request.namespace, request.service_account or "default"))
        self.agents[request.agent_id] = Registered(request, identity)
        self.bump()
        return control_pb2.RegisterResponse(
            agent_id=request.agent_id, snapshot=self.snapshot(), heartbeat_interval_ms=self.heartbeat_interval_ms
        )

    async def Heartbeat(  # noqa: N802
        self, request: control_pb2.HeartbeatRequest, context: Any
    ) -> control_pb2.HeartbeatResponse:
        if request.agent_id not in self.agents:
            return control_pb2.HeartbeatResponse(latest_version=self.version, reregister=True)
        reply = control_pb2.HeartbeatResponse(latest_version=self.version)
        if request.applied_version < self.version:
            reply.snapshot.CopyFrom(self.snapshot())
        return reply

    async def Deregister(  # noqa: N802
        self, request: control_pb2.DeregisterRequest, context: Any
    ) -> control_pb2.DeregisterResponse:
        self.agents.pop(request.agent_id, None)
        self.bump()
        return control_pb2.DeregisterResponse()

    # OTLP traces

    async def Export(  # noqa: N802
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.spans.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _DiscardMetrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    async def Export(  # noqa: N802
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        return metrics_service_pb2.ExportMetricsServiceResponse()
