"""Where the CA's certificates and keys live: a directory the control plane alone can read.

Layout of ``MESH_CA_DIR`` (default ``<data dir>/ca``, mode 0700)::

    authorities/<id>/root.crt, root.key                  one per root generation
    authorities/<id>/intermediate.crt, intermediate.key  when MESH_CA_INTERMEDIATE is on
    active                                               the id that signs new certificates
    retired/<id>/                                        roots taken out of the trust bundle

The trust bundle is every root under ``authorities/``: rotating adds a root and makes it
active while agents still trust the old one; retiring removes the old one later. Keys are
written 0600, atomically, under a lock, so processes starting together (web, gRPC server)
agree on one root.

In Kubernetes the root may come from a mounted Secret instead (``MESH_CA_CERT_FILE`` and
``MESH_CA_KEY_FILE``, plus ``MESH_CA_BUNDLE_FILE`` for roots still trusted during a
rotation); that material is read, never written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshui.identity.authority import Authority, new_intermediate, new_root


class CaConfigurationError(RuntimeError):
    pass


@dataclass(frozen=True)
class CaSettings:
    directory: Path
    trust_domain: str
    intermediate: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    bundle_file: Path | None = None


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaConfigurationError(f"{path}: the CA key must be an ECDSA key")
    return key


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as 0600 from the first byte, replacing it atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class CaStore:
    """Loads, creates, rotates and retires the CA's roots in one directory (or reads a mounted Secret)."""

    def __init__(self, settings: CaSettings) -> None:
        self.settings = settings

    @property
    def _authorities(self) -> Path:
        return self.settings.directory / "authorities"

    @property
    def read_only(self) -> bool:
        return self.settings.cert_file is not None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.settings.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.settings.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, authority_id: str, root: Authority, intermediate: Authority | None) -> None:
        folder = self._authorities / authority_id
        folder.mkdir(mode=0o700, parents=True, exist_ok=False)
        _write_private(folder / "root.key", _key_pem(root.key))
        (folder / "root.crt").write_bytes(_pem(root.certificate))
        if intermediate is not None:
            _write_private(folder / "intermediate.key", _key_pem(intermediate.key))
            (folder / "intermediate.crt").write_bytes(_pem(intermediate.certificate))

    def _create(self, now: dt.datetime) -> str:
        root = new_root(self.settings.trust_domain, now)
        intermediate = new_intermediate(root, self.settings.trust_domain, now) if self.settings.intermediate else None
        authority_id = f"{now:%Y%m%dT%H%M%S}-{root.fingerprint[:12]}"
        self._save(authority_id, root, intermediate)
        _write_private(self.settings.directory / "active", authority_id.encode())
        return authority_id

    def _load(self, authority_id: str) -> Authority:
        folder = self._authorities / authority_id
        root_cert = x509.load_pem_x509_certificate((folder / "root.crt").read_bytes())
        root = Authority(root_cert, _load_key(folder / "root.key"), (), root_cert)
        if (folder / "intermediate.crt").exists():
            certificate = x509.load_pem_x509_certificate((folder / "intermediate.crt").read_bytes())
            return Authority(certificate, _load_key(folder / "intermediate.key"), (certificate,), root_cert)
        return root

    def _active_id(self) -> str | None:
        marker = self.settings.directory / "active"
        return marker.read_text().strip() if marker.exists() else None

    def signer(self, now: dt.datetime) -> Authority:
        """The authority that signs new certificates, generating the first root if there is none."""
        if self.read_only:
            return self._from_secret()
        with self._locked():
            active = self._active_id() or self._create(now)
            return self._load(active)

    def _from_secret(self) -> Authority:
        cert_file, key_file = self.settings.cert_file, self.settings.key_file
        if cert_file is None or key_file is None:
            raise CaConfigurationError("MESH_CA_CERT_FILE and MESH_CA_KEY_FILE go together")
        certificates = x509.load_pem_x509_certificates(cert_file.read_bytes())
        key = _load_key(key_file)
        signing, *chain = certificates
        root = chain[-1] if chain else signing
        return Authority(signing, key, tuple(cert for cert in (signing, *chain) if cert != root), root)

    def bundle(self, now: dt.datetime) -> list[x509.Certificate]:
        """Every root agents must trust now: the active one first, then those not yet retired.

        Agents re-issue when their certificate does not chain to the first root: that is how a
        rotation reaches them.
        """
        return [root for _, root in self.bundle_entries(now)]

    def bundle_entries(self, now: dt.datetime) -> list[tuple[str | None, x509.Certificate]]:
        """``bundle`` with each root's authority id (``None`` for roots from a mounted Secret)."""
        if self.read_only:
            roots = [self._from_secret().root]
            if self.settings.bundle_file is not None:
                extra = x509.load_pem_x509_certificates(self.settings.bundle_file.read_bytes())
                roots += [certificate for certificate in extra if certificate not in roots]
            return [(None, root) for root in roots]
        self.signer(now)
        active = self._active_id()
        folders = sorted(self._authorities.iterdir(), key=lambda folder: (folder.name != active, folder.name))
        return [
            (folder.name, x509.load_pem_x509_certificate((folder / "root.crt").read_bytes()))
            for folder in folders
            if (folder / "root.crt").exists()
        ]

    def rotate(self, now: dt.datetime) -> str:
        """Add a new root and sign with it from now on; the old roots stay trusted until retired."""
        self._require_writable("rotate")
        with self._locked():
            return self._create(now)

    def retire(self, authority_id: str) -> None:
        """Take a root out of the bundle; certificates it signed stop being trusted."""
        self._require_writable("retire a root")
        with self._locked():
            if authority_id == self._active_id():
                raise CaConfigurationError("the active root signs new certificates; rotate before retiring it")
            folder = self._authorities / authority_id
            if not folder.is_dir():
                raise CaConfigurationError(f"no root {authority_id!r} in the bundle")
            retired = self.settings.directory / "retired"
            retired.mkdir(mode=0o700, exist_ok=True)
            shutil.move(str(folder), retired / authority_id)

    def authority_ids(self) -> list[str]:
        if self.read_only or not self._authorities.exists():
            return []
        return sorted(folder.name for folder in self._authorities.iterdir() if folder.is_dir())

    def active_id(self) -> str | None:
        return None if self.read_only else self._active_id()

    def _require_writable(self, doing: str) -> None:
        if self.read_only:
            raise CaConfigurationError(
                f"the CA comes from MESH_CA_CERT_FILE/MESH_CA_KEY_FILE: {doing} by updating that Secret"
            )
