"""The control plane's own TLS identity for the MeshControl gRPC server.

Its key is made in memory when the server starts and never written anywhere; its
certificate comes from the mesh's CA like any workload's, with the host names agents
dial added. Credentials are dynamic: each new connection gets the current certificate
and trust bundle, so the certificate renews at half-life and a CA rotation is picked
up without a restart.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.utils import timezone

from meshui.identity.authority import issue_server_certificate
from meshui.identity.issuance import bundle_pem, ca_store
from meshui.identity.spiffe import SpiffeId

logger = logging.getLogger(__name__)
BUNDLE_CHECK_INTERVAL = dt.timedelta(seconds=5)
# Unique across identities in this process, so a channel cached for an older one is never reused.
_GENERATIONS = itertools.count(1)


def control_plane_spiffe_id() -> SpiffeId:
    return SpiffeId(settings.MESH_TRUST_DOMAIN, settings.MESH_CONTROL_NAMESPACE, settings.MESH_CONTROL_SERVICE_ACCOUNT)


class ControlPlaneIdentity:
    """Current key, certificate chain and bundle; ``configuration`` renews them when due."""

    def __init__(self, hosts: tuple[str, ...], ttl: dt.timedelta) -> None:
        self.hosts = hosts
        self.ttl = ttl
        self._lock = threading.Lock()
        self._renew_at: dt.datetime | None = None
        self._served: tuple[bytes, bytes] | None = None  # (chain, bundle) last handed to gRPC
        # Bumped with each new certificate or bundle: clients keyed by it open fresh channels.
        self.generation = 0
        self._bundle_checked: dt.datetime | None = None
        self.key_pem = b""
        self.chain_pem = b""
        self.bundle_pem = b""
        self._issue(timezone.now())

    def _issue(self, now: dt.datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        store = ca_store()
        issued = issue_server_certificate(
            store.signer(now), key.public_key(), control_plane_spiffe_id(), self.hosts, now=now, ttl=self.ttl
        )
        self.key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.chain_pem = issued.chain_pem
        self.bundle_pem = bundle_pem(store, now)
        self.generation = next(_GENERATIONS)
        lifetime = issued.certificate.not_valid_after_utc - now
        self._renew_at = now + lifetime / 2
        logger.info("control plane certificate for %s, renewing at %s", ", ".join(self.hosts), self._renew_at)

    def _current(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the certificate or bundle changed since last asked, else ``None``."""
        with self._lock:
            now = timezone.now()
            if self._renew_at is not None and now >= self._renew_at:
                self._issue(now)
            else:
                self.bundle_pem = bundle_pem(ca_store(), now)
            state = (self.chain_pem, self.bundle_pem)
            if state == self._served:
                return None
            self._served = state
            return grpc.ssl_server_certificate_configuration(
                [(self.key_pem, self.chain_pem)], root_certificates=self.bundle_pem
            )

    def server_credentials(self) -> grpc.ServerCredentials:
        initial = self._current()
        assert initial is not None  # the first call always has something to serve
        # Client certificates are optional: an agent's first call (with a join token) has none yet;
        # when one is presented it must chain to the bundle.
        return grpc.dynamic_ssl_server_credentials(
            initial,
            self._current,  # type: ignore[arg-type]  # gRPC documents None as "unchanged"; the stubs do not
            require_client_authentication=False,
        )

    def client_material(self) -> tuple[int, bytes, bytes, bytes]:
        """(generation, key, chain, bundle) for calling agents as the control plane, renewed when due."""
        with self._lock:
            now = timezone.now()
            due = self._renew_at is not None and now >= self._renew_at
            # A new bundle means a rotation (or another CA): a certificate from the current signer goes with
            # it. Looked at every few seconds, not on every call: a rollout asks once per agent.
            if not due and (self._bundle_checked is None or now - self._bundle_checked >= BUNDLE_CHECK_INTERVAL):
                self._bundle_checked = now
                due = bundle_pem(ca_store(), now) != self.bundle_pem
            if due:
                self._issue(now)
            return self.generation, self.key_pem, self.chain_pem, self.bundle_pem


_client_identity: ControlPlaneIdentity | None = None
_client_lock = threading.Lock()


def control_plane_client_material() -> tuple[int, bytes, bytes, bytes]:
    """This process's identity as a client of agents (made on first use; its key lives only in memory)."""
    global _client_identity
    with _client_lock:
        if _client_identity is None:
            _client_identity = ControlPlaneIdentity((), dt.timedelta(hours=settings.MESH_CERT_TTL_HOURS))
        identity = _client_identity
    return identity.client_material()
