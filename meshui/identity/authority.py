"""Signing workload certificates: X.509 with a SPIFFE URI SAN, from a root or an intermediate.

Pure functions of keys, certificates and time, so they test without storage.
The private keys handled here are the CA's own; a workload's key never
reaches the control plane (the agent sends a CSR).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshui.identity.spiffe import SpiffeId

ROOT_VALIDITY = dt.timedelta(days=3650)
INTERMEDIATE_VALIDITY = dt.timedelta(days=365)
# Clocks of agents and control plane differ a little; a certificate valid from a minute ago is
# not refused by a peer whose clock runs behind.
BACKDATE = dt.timedelta(minutes=1)
MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)

CaKey = ec.EllipticCurvePrivateKey
LeafKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class CsrRefused(ValueError):  # noqa: N818 - the control plane's answer to the agent is "refused"
    """A CSR that must not become a certificate; the message is safe to send back."""


@dataclass(frozen=True)
class Authority:
    """One signing certificate with its key, the chain above it (up to, not including, the root) and its root."""

    certificate: x509.Certificate
    key: CaKey
    chain: tuple[x509.Certificate, ...]
    root: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return self.root.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    chain_pem: bytes  # leaf first, then intermediates: what a TLS peer presents

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshui"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _ca_certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signing_key: CaKey,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    path_length: int,
    issuer_key_id: x509.SubjectKeyIdentifier | None,
) -> x509.Certificate:
    subject_key_id = x509.SubjectKeyIdentifier.from_public_key(public_key)
    authority_key_id = (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id)
        if issuer_key_id is not None
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(subject_key_id, critical=False)
        .add_extension(authority_key_id, critical=False)
        .sign(signing_key, hashes.SHA256())
    )


def new_root(trust_domain: str, now: dt.datetime) -> Authority:
    """A fresh self-signed root (ECDSA P-256) for ``trust_domain``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"meshui root CA {trust_domain} {now:%Y-%m-%d %H:%M:%S}")
    certificate = _ca_certificate(
        name,
        key.public_key(),
        name,
        key,
        now=now,
        validity=ROOT_VALIDITY,
        path_length=1,
        issuer_key_id=None,
    )
    return Authority(certificate, key, (), certificate)


def new_intermediate(root: Authority, trust_domain: str, now: dt.datetime) -> Authority:
    """An intermediate signed by ``root``: the root's key can then stay offline-like, used once a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    root_key_id = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = _ca_certificate(
        _name(f"meshui intermediate CA {trust_domain} {now:%Y-%m-%d %H:%M:%S}"),
        key.public_key(),
        root.certificate.subject,
        root.key,
        now=now,
        validity=min(INTERMEDIATE_VALIDITY, root.certificate.not_valid_after_utc - now),
        path_length=0,
        issuer_key_id=root_key_id,
    )
    return Authority(certificate, key, (certificate,), root.root)


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise CsrRefused("the CSR is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CsrRefused("the CSR's signature does not verify: it was not made with the key it carries")
    return csr


def _check_public_key(csr: x509.CertificateSigningRequest) -> None:
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            raise CsrRefused(f"elliptic curve {key.curve.name} is not accepted (use P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRefused(f"RSA keys need at least {MIN_RSA_BITS} bits")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CsrRefused("only ECDSA (P-256, P-384), RSA (2048+) and Ed25519 keys are accepted")


def requested_uris(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    if san.get_values_for_type(x509.DNSName) or san.get_values_for_type(x509.IPAddress):
        raise CsrRefused("workload certificates carry only a SPIFFE URI; remove DNS and IP names from the CSR")
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def issue(
    authority: Authority,
    csr: x509.CertificateSigningRequest,
    identity: SpiffeId,
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> IssuedCertificate:
    """Sign a workload certificate for ``identity``, which the caller established from a credential.

    The CSR may name the identity (a URI SAN) but never choose it: a CSR that asks for any other
    URI is refused, so an agent cannot obtain a certificate its credential does not grant.
    """
    _check_public_key(csr)
    requested = requested_uris(csr)
    if requested and requested != [str(identity)]:
        raise CsrRefused(f"the CSR asks for {', '.join(requested)}, but the credential grants {identity}")
    return _sign_leaf(authority, csr.public_key(), identity, (identity.dns_name,), now=now, ttl=ttl)  # type: ignore[arg-type]


def issue_server_certificate(
    authority: Authority,
    public_key: LeafKey,
    identity: SpiffeId,
    hosts: tuple[str, ...],
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> IssuedCertificate:
    """The control plane's own certificate: its SPIFFE id plus the names agents dial it by.

    Only the control plane gets DNS and IP names; a workload CSR asking for one is refused.
    """
    return _sign_leaf(authority, public_key, identity, hosts, now=now, ttl=ttl)


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _sign_leaf(
    authority: Authority,
    public_key: LeafKey,
    identity: SpiffeId,
    hosts: tuple[str, ...],
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> IssuedCertificate:
    not_after = min(now + ttl, authority.certificate.not_valid_after_utc)
    signer_key_id = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key exchange (TLS 1.2) encrypts with the key; ECDSA and Ed25519 keys only sign.
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    names = [x509.UniformResourceIdentifier(str(identity)), *(_host_name(host) for host in hosts)]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshui")]))
        .issuer_name(authority.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        # SPIFFE X.509-SVID: the subject carries no identity, so the SAN is critical.
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(signer_key_id), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    chain = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in (certificate, *authority.chain))
    return IssuedCertificate(certificate, chain)


def verify_chain(leaf: x509.Certificate, intermediates: list[x509.Certificate], roots: list[x509.Certificate]) -> None:
    """Check that ``leaf`` chains to one of ``roots`` (signatures and validity only); raises ``ValueError``."""
    issuer = leaf
    path = [*intermediates]
    while True:
        parent = next((c for c in [*path, *roots] if c.subject == issuer.issuer), None)
        if parent is None:
            raise ValueError("the certificate does not chain to a trusted root")
        try:
            issuer.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ValueError(f"bad signature in chain: {exc}") from None
        if parent in roots:
            return
        path.remove(parent)
        issuer = parent


def verify_signature(public_key: object, signature: bytes, data: bytes) -> None:
    """Check a proof of possession made by the key of ``public_key``; raises ``InvalidSignature``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        raise InvalidSignature("unsupported key type")
