"""The control plane's own TLS identity for the MeshControl gRPC server.

Its key is made in memory when the server starts and never written anywhere; its
certificate comes from the mesh's CA like any workload's, with the host names agents
dial added. Credentials are dynamic: each new connection gets the current certificate
and trust bundle, so the certificate renews at half-life and a CA rotation is picked
up without a restart.
"""

from __future__ import annotations

import datetime as dt
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
