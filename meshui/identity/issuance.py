"""Turning an agent's CSR plus a credential into a workload certificate, and recording it."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from meshui.catalog.models import Namespace
from meshui.identity import kubernetes_tokens
from meshui.identity.authority import CsrRefused, issue, load_csr, requested_uris, verify_chain, verify_signature
from meshui.identity.models import IssuedCertificate, JoinToken
from meshui.identity.spiffe import SpiffeId
from meshui.identity.store import CaSettings, CaStore

logger = logging.getLogger(__name__)


class CredentialRefusedError(PermissionError):
    """The credential does not prove the identity asked for; the message is safe to send back."""


@dataclass(frozen=True)
class JoinTokenCredential:
    token: str


@dataclass(frozen=True)
class RenewalCredential:
    """A renewal: the agent's current certificate chain, and its current key's signature over the new CSR.

    A captured renewal is worthless to replay: the certificate it yields is for the CSR's key,
    which only the agent holds.
    """

    chain_pem: bytes
    signature: bytes


@dataclass(frozen=True)
class KubernetesCredential:
    """A projected service-account token of the agent's pod (cluster mode), checked with TokenReview."""

    token: str


Credential = JoinTokenCredential | RenewalCredential | KubernetesCredential


@dataclass(frozen=True)
class Issued:
    chain_pem: bytes
    bundle_pem: bytes
    spiffe_id: SpiffeId
    not_after: dt.datetime


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def ca_store() -> CaStore:
    return CaStore(
        CaSettings(
            directory=Path(settings.MESH_CA_DIR),
            trust_domain=settings.MESH_TRUST_DOMAIN,
            intermediate=settings.MESH_CA_INTERMEDIATE,
            cert_file=_optional_path(settings.MESH_CA_CERT_FILE),
            key_file=_optional_path(settings.MESH_CA_KEY_FILE),
            bundle_file=_optional_path(settings.MESH_CA_BUNDLE_FILE),
        )
    )


def bundle_pem(store: CaStore, now: dt.datetime) -> bytes:
    return b"".join(root.public_bytes(serialization.Encoding.PEM) for root in store.bundle(now))


def _credential_name(credential: Credential) -> str:
    if isinstance(credential, JoinTokenCredential):
        return "join_token"
    return "kubernetes" if isinstance(credential, KubernetesCredential) else "renewal"


def _identity_for_token(token: JoinToken, requested: list[str]) -> SpiffeId:
    if requested:
        try:
            identity = SpiffeId.parse(requested[0])
        except ValueError as exc:
            raise CsrRefused(str(exc)) from None
    elif token.service_account:
        identity = SpiffeId(settings.MESH_TRUST_DOMAIN, token.namespace.name, token.service_account)
    else:
        raise CsrRefused("the join token covers every service account of its namespace: name one in the CSR")
    if identity.trust_domain != settings.MESH_TRUST_DOMAIN:
        raise CredentialRefusedError(
            f"this mesh's trust domain is {settings.MESH_TRUST_DOMAIN}, not {identity.trust_domain}"
        )
    if not token.grants(identity.namespace, identity.service_account):
        raise CredentialRefusedError(f"the join token does not grant {identity}")
    return identity


def _identity_for_renewal(credential: RenewalCredential, csr_pem: bytes, now: dt.datetime) -> SpiffeId:
    try:
        leaf, *intermediates = x509.load_pem_x509_certificates(credential.chain_pem)
        verify_chain(leaf, intermediates, ca_store().bundle(now))
    except ValueError as exc:
        raise CredentialRefusedError(f"the current certificate is not one of this mesh's: {exc}") from None
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise CredentialRefusedError("the current certificate has expired: join again with a token")
    try:
        verify_signature(leaf.public_key(), credential.signature, csr_pem)
    except InvalidSignature:
        raise CredentialRefusedError("the proof of possession does not verify with the current certificate") from None
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        [uri] = san.get_values_for_type(x509.UniformResourceIdentifier)
        identity = SpiffeId.parse(uri)
    except (ValueError, x509.ExtensionNotFound):
        raise CredentialRefusedError("the current certificate names no workload identity") from None
    if identity.trust_domain != settings.MESH_TRUST_DOMAIN:
        raise CredentialRefusedError("the current certificate is from another trust domain")
    return identity


def _identity_for_service_account(credential: KubernetesCredential, requested: list[str]) -> SpiffeId:
    if not settings.MESH_KUBERNETES_TOKENS:
        raise CredentialRefusedError("Kubernetes service-account tokens are accepted in cluster mode only")
    try:
        account = kubernetes_tokens.review(credential.token)
    except kubernetes_tokens.TokenReviewFailed as exc:
        logger.error("%s", exc)
        raise CredentialRefusedError("the service-account token could not be checked; try again later") from None
    if account is None:
        raise CredentialRefusedError(
            f"the Kubernetes API server does not vouch for this token for audience "
            f"{settings.MESH_KUBERNETES_TOKEN_AUDIENCE!r}"
        )
    identity = SpiffeId(settings.MESH_TRUST_DOMAIN, account.namespace, account.name)
    if requested and requested != [str(identity)]:
        raise CredentialRefusedError(f"the service-account token grants {identity} only")
    return identity


def do_issue_certificate(csr_pem: bytes, credential: Credential, *, agent_id: str = "") -> Issued:
    """Verify the credential, sign the CSR for the identity it grants, record the certificate.

    Raises ``CsrRefused`` (a bad request) or ``CredentialRefusedError`` (not allowed).
    """
    now = timezone.now()
    csr = load_csr(csr_pem)
    requested = requested_uris(csr)
    token: JoinToken | None = None
    if isinstance(credential, JoinTokenCredential):
        token = JoinToken.find(credential.token, now)
        if token is None:
            raise CredentialRefusedError("the join token is unknown, expired or revoked")
        identity = _identity_for_token(token, requested)
    elif isinstance(credential, KubernetesCredential):
        identity = _identity_for_service_account(credential, requested)
    else:
        identity = _identity_for_renewal(credential, csr_pem, now)
    namespace = Namespace.objects.filter(name=identity.namespace).first()
    if namespace is None:
        raise CredentialRefusedError(f"namespace {identity.namespace!r} does not exist")
    store = ca_store()
    authority = store.signer(now)
    issued = issue(authority, csr, identity, now=now, ttl=dt.timedelta(hours=settings.MESH_CERT_TTL_HOURS))
    with transaction.atomic():
        IssuedCertificate.objects.create(
            serial=issued.serial_hex,
            spiffe_id=str(identity),
            namespace=namespace,
            service_account=identity.service_account,
            agent_id=agent_id,
            authority=authority.fingerprint,
            credential=_credential_name(credential),
            join_token=token,
            not_before=issued.certificate.not_valid_before_utc,
            not_after=issued.certificate.not_valid_after_utc,
        )
        if token is not None:
            JoinToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return Issued(issued.chain_pem, bundle_pem(store, now), identity, issued.certificate.not_valid_after_utc)
