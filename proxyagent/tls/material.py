"""The agent's key, its certificate requests, and the TLS contexts built from its certificate.

The private key is made in memory (ECDSA P-256) and never leaves the process:
it is not sent (only a CSR is), not logged, and not written to disk. The
standard library's ``ssl`` module loads keys only from files, so the key goes
to OpenSSL through an anonymous in-memory file (``memfd_create``, Linux);
where that does not exist, through a temporary file holding the key encrypted
under a random password that exists only in memory, removed once loaded.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxyagent.lazy_imports import lazy_module
from proxyagent.tls.spiffe import WORKLOAD_ID, peer_id, trust_domain_of

if TYPE_CHECKING:
    import tempfile

    from cryptography import exceptions, x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    PrivateKey = ec.EllipticCurvePrivateKey
else:
    # Loaded when first used (proxyagent.lazy_imports): an agent without mTLS never needs them.
    exceptions = lazy_module("cryptography.exceptions")
    x509 = lazy_module("cryptography.x509")
    hashes = lazy_module("cryptography.hazmat.primitives.hashes")
    serialization = lazy_module("cryptography.hazmat.primitives.serialization")
    ec = lazy_module("cryptography.hazmat.primitives.asymmetric.ec")
    # Brings shutil, bz2 and lzma (0.7 MB); only the fallback without /proc needs it.
    tempfile = lazy_module("tempfile")


class CertificateError(ValueError):
    """An issued certificate or bundle the agent cannot use; the message says why."""


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: PrivateKey, spiffe_id: str) -> bytes:
    """A PKCS#10 request naming ``spiffe_id`` (its only SAN), signed by ``key``; PEM."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def proof_of_possession(key: PrivateKey, csr_pem: bytes) -> bytes:
    """The current key's signature over a renewal's CSR (ECDSA with SHA-256), as the control plane checks it."""
    return key.sign(csr_pem, ec.ECDSA(hashes.SHA256()))


def parse_bundle(bundle_pem: bytes) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a PEM trust bundle, in order; ``CertificateError`` when it holds none or junk."""
    try:
        roots = tuple(x509.load_pem_x509_certificates(bundle_pem))
    except ValueError as exc:
        raise CertificateError(f"the trust bundle is not PEM certificates: {exc}") from None
    for root in roots:
        try:
            constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise CertificateError("a trust bundle certificate is not a CA (no basic constraints)") from None
        if not constraints.ca:
            raise CertificateError("a trust bundle certificate is not a CA")
    return roots


def spiffe_id_of(certificate: x509.Certificate) -> str | None:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or WORKLOAD_ID.match(uris[0]) is None:
        return None
    return uris[0]


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, exceptions.InvalidSignature):
        return False
    return True


class _MeshTlsObject(ssl.SSLObject):
    """One TLS connection of the mesh (asyncio's, made by ``wrap_bio``): its handshake fails, as one whose chain
    does not verify, when the peer's certificate names a workload of another trust domain than this agent's.

    OpenSSL checks only that the peer's chain ends at a root of the bundle. SPIFFE verifies an X.509-SVID
    against the bundle of the trust domain it names, and the agent's bundle is its own trust domain's: without
    this, a certificate for ``spiffe://other.example/ns/shop/sa/web`` under a root that bundle shares with
    another trust domain would pass for a caller of namespace ``shop``. A certificate naming no workload at
    all is the listeners' to refuse (``no_identity``).
    """

    def do_handshake(self) -> None:
        super().do_handshake()
        context = self.context
        assert isinstance(context, _MeshContext)
        refuse_foreign_trust_domain(self.getpeercert(), context.trust_domain)


def refuse_foreign_trust_domain(peercert: Mapping[str, Any] | None, trust_domain: str) -> None:
    """Raise ``ssl.SSLCertVerificationError`` when a verified peer certificate names a workload of another trust
    domain than ``trust_domain`` (see ``_MeshTlsObject``); both TLS record layers call it after the handshake."""
    peer = peer_id(peercert)
    if peer is not None and trust_domain_of(peer) != trust_domain:
        error = ssl.SSLCertVerificationError(
            f"the peer's certificate names {peer}, not a workload of trust domain {trust_domain}"
        )
        error.reason = "FOREIGN_TRUST_DOMAIN"  # as OpenSSL's errors carry one
        raise error


class _MeshContext(ssl.SSLContext):
    """A context of the agent's mutual TLS: its connections are ``_MeshTlsObject``s, for ``trust_domain``."""

    sslobject_class = _MeshTlsObject
    trust_domain = ""


@dataclass(frozen=True)
class WorkloadCertificate:
    """The agent's key, the certificate chain issued for it (leaf first) and the bundle it trusts."""

    key: PrivateKey = field(repr=False)
    chain_pem: bytes
    bundle_pem: bytes
    chain: tuple[x509.Certificate, ...]
    bundle: tuple[x509.Certificate, ...]
    spiffe_id: str

    @classmethod
    def build(cls, key: PrivateKey, chain_pem: bytes, bundle_pem: bytes, expected_id: str) -> WorkloadCertificate:
        """Check what the control plane sent before using it: the leaf is for our key and identity, and it
        chains to a root of the bundle."""
        try:
            chain = tuple(x509.load_pem_x509_certificates(chain_pem))
        except ValueError as exc:
            raise CertificateError(f"the certificate chain is not PEM certificates: {exc}") from None
        bundle = parse_bundle(bundle_pem)
        leaf = chain[0]
        ours = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if ours != theirs:
            raise CertificateError("the certificate is not for this agent's key")
        spiffe_id = spiffe_id_of(leaf)
        if spiffe_id != expected_id:
            raise CertificateError(f"the certificate names {spiffe_id}, not {expected_id}")
        for child, parent in itertools.pairwise(chain):
            if not _issued_by(child, parent):
                raise CertificateError("the certificate chain is out of order or broken")
        if not any(_issued_by(chain[-1], root) for root in bundle):
            raise CertificateError("the certificate does not chain to a root of the trust bundle")
        return cls(key, chain_pem, bundle_pem, chain, bundle, spiffe_id)

    def with_bundle(self, bundle_pem: bytes) -> WorkloadCertificate:
        """The same certificate trusting another bundle (a CA rotation reached the agent)."""
        return WorkloadCertificate(
            self.key, self.chain_pem, bundle_pem, self.chain, parse_bundle(bundle_pem), self.spiffe_id
        )

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> float:
        return self.leaf.not_valid_before_utc.timestamp()

    @property
    def not_after(self) -> float:
        return self.leaf.not_valid_after_utc.timestamp()

    @property
    def renew_at(self) -> float:
        """Half-life: the control plane then still has half the lifetime to answer a renewal."""
        return self.not_before + (self.not_after - self.not_before) / 2

    @property
    def serial(self) -> str:
        return format(self.leaf.serial_number, "x")

    @property
    def chains_to_signing_root(self) -> bool:
        """Whether the chain ends at the bundle's first root, the one the CA signs with now."""
        return bool(self.bundle) and _issued_by(self.chain[-1], self.bundle[0])

    def key_pem(self) -> bytes:
        """The key as PKCS#8 PEM, for gRPC's credentials (which take bytes); never store it."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def server_context(self) -> ssl.SSLContext:
        """The inbound side: TLS 1.3, our chain, and a client certificate required that chains to the bundle (and
        names no workload of another trust domain)."""
        context = _MeshContext(ssl.PROTOCOL_TLS_SERVER)
        self._configure(context)
        # No session tickets: callers never resume (each pooled connection lives long), and each ticket costs the
        # server a session to serialize and encrypt, and the caller one to parse, on every handshake.
        context.num_tickets = 0
        return context

    def client_context(self) -> ssl.SSLContext:
        """The outbound side: TLS 1.3, our chain as the client certificate, the server's chain checked against
        the bundle. Host names are not checked: the caller compares the server's SPIFFE id instead."""
        context = _MeshContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        self._configure(context)
        return context

    def _configure(self, context: _MeshContext) -> None:
        context.trust_domain = trust_domain_of(self.spiffe_id)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self.bundle_pem.decode("ascii"))
        load_key_and_chain(context, self.key, self.chain_pem)


def load_key_and_chain(context: ssl.SSLContext, key: PrivateKey, chain_pem: bytes) -> None:
    """``context.load_cert_chain`` without the key ever reaching a disk."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        plain = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = memfd_create("proxyagent-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, chain_pem + plain)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    password = secrets.token_bytes(32)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="proxyagent-tls-") as directory:
        path = os.path.join(directory, "chain-and-encrypted-key.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, chain_pem + encrypted)
        finally:
            os.close(descriptor)
        try:
            context.load_cert_chain(path, password=password)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
