"""AgentAdmin over mutual TLS: only the control plane's identity may configure an agent in mTLS mode.

The gRPC server presents the agent's workload certificate (which also carries
the DNS name ``<sa>.<namespace>.<trust domain>``, what the control plane's
pushes verify) and requires a client certificate chaining to the trust
bundle; the servicer then refuses any client whose SPIFFE id is not the
control plane's (PERMISSION_DENIED). Credentials are dynamic: each new
connection gets the current certificate and bundle.

The server is bound when the agent starts, before it has its certificate
(the registration carries its port): until the first certificate arrives it
presents a throwaway self-signed one that no peer trusts, so no client
completes a handshake with it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import grpc

from proxyagent.lazy_imports import lazy_module
from proxyagent.tls.certificates import WorkloadCertificates
from proxyagent.tls.material import spiffe_id_of

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
else:
    # Loaded when first used (proxyagent.lazy_imports): only mTLS mode serves AgentAdmin with certificates.
    x509 = lazy_module("cryptography.x509")
    hashes = lazy_module("cryptography.hazmat.primitives.hashes")
    serialization = lazy_module("cryptography.hazmat.primitives.serialization")
    ec = lazy_module("cryptography.hazmat.primitives.asymmetric.ec")


def _placeholder() -> tuple[bytes, bytes]:
    """(key, certificate) PEM of a self-signed certificate no peer trusts, made in memory."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "proxyagent without a workload certificate yet")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


class AdminCredentials:
    """Dynamic server credentials following ``certificates``; ``extra_roots`` are trusted besides the bundle."""

    def __init__(self, certificates: WorkloadCertificates, extra_roots: bytes) -> None:
        self._certificates = certificates
        self._extra_roots = extra_roots
        self._served = -1

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        current = self._certificates.current
        self._served = self._certificates.generation
        if current is None:
            key, chain = _placeholder()
            roots = self._extra_roots
        else:
            key, chain = current.key_pem(), current.chain_pem
            roots = current.bundle_pem + (b"\n" + self._extra_roots if self._extra_roots else b"")
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each new handshake: a new configuration only when the certificate changed."""
        if self._certificates.generation == self._served:
            return None
        return self._configuration()

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self._fetch,  # type: ignore[arg-type]  # gRPC documents None as "unchanged"; the stubs do not
            require_client_authentication=True,
        )


def client_spiffe_id(context: Any) -> str | None:
    """The SPIFFE id of the verified client certificate of a gRPC call, or ``None`` (plaintext, none, junk)."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if len(pems) != 1:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return None
    return spiffe_id_of(certificate)
