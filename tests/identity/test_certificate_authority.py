"""The CA: what it signs, what it refuses, and how its roots are kept, rotated and retired."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshui.identity.authority import CsrRefused, issue, load_csr, new_intermediate, new_root, verify_chain
from meshui.identity.spiffe import SpiffeId
from meshui.identity.store import CaConfigurationError, CaSettings, CaStore

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
REVIEWS = SpiffeId("cluster.local", "shop", "reviews")


def csr_for(uris: list[str], key: Any = None, dns: list[str] | None = None) -> tuple[bytes, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
    names += [x509.DNSName(name) for name in dns or []]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key


def test_a_workload_certificate_carries_exactly_its_spiffe_id_and_chains_to_the_root() -> None:
    root = new_root("cluster.local", NOW)
    pem, key = csr_for([str(REVIEWS)])
    issued = issue(root, load_csr(pem), REVIEWS, now=NOW, ttl=dt.timedelta(hours=24))
    cert = issued.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [str(REVIEWS)]
    # The name gRPC peers verify, derived from the identity (never from the CSR).
    assert san.value.get_values_for_type(x509.DNSName) == ["reviews.shop.cluster.local"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_after_utc - NOW == dt.timedelta(hours=24)
    assert cert.public_key() == key.public_key()
    verify_chain(cert, [], [root.certificate])


def test_an_intermediate_signs_and_the_chain_goes_with_the_leaf() -> None:
    root = new_root("cluster.local", NOW)
    intermediate = new_intermediate(root, "cluster.local", NOW)
    pem, _ = csr_for([])
    issued = issue(intermediate, load_csr(pem), REVIEWS, now=NOW, ttl=dt.timedelta(hours=1))
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert chain[0] == issued.certificate
    assert chain[1] == intermediate.certificate
    verify_chain(chain[0], chain[1:], [root.certificate])
    with pytest.raises(ValueError, match="chain"):
        verify_chain(chain[0], [], [root.certificate])


def test_a_certificate_never_outlives_its_signer() -> None:
    root = new_root("cluster.local", NOW)
    pem, _ = csr_for([])
    issued = issue(root, load_csr(pem), REVIEWS, now=NOW, ttl=dt.timedelta(days=100_000))
    assert issued.certificate.not_valid_after_utc == root.certificate.not_valid_after_utc


@pytest.mark.parametrize(
    ("uris", "dns", "message"),
    [
        (["spiffe://cluster.local/ns/shop/sa/admin"], [], "grants"),
        ([str(REVIEWS), "spiffe://cluster.local/ns/shop/sa/other"], [], "grants"),
        ([str(REVIEWS)], ["reviews.shop.svc"], "DNS"),
    ],
    ids=["other-identity", "extra-identity", "dns-name"],
)
def test_a_csr_asking_for_more_than_the_grant_is_refused(uris: list[str], dns: list[str], message: str) -> None:
    root = new_root("cluster.local", NOW)
    pem, _ = csr_for(uris, dns=dns)
    with pytest.raises(CsrRefused, match=message):
        issue(root, load_csr(pem), REVIEWS, now=NOW, ttl=dt.timedelta(hours=1))


def test_weak_and_foreign_keys_are_refused() -> None:
    root = new_root("cluster.local", NOW)
    weak, _ = csr_for([], key=rsa.generate_private_key(65537, 1024))  # noqa: S505 - too weak on purpose
    with pytest.raises(CsrRefused, match="2048"):
        issue(root, load_csr(weak), REVIEWS, now=NOW, ttl=dt.timedelta(hours=1))
    odd_curve, _ = csr_for([], key=ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(CsrRefused, match="curve"):
        issue(root, load_csr(odd_curve), REVIEWS, now=NOW, ttl=dt.timedelta(hours=1))


def test_garbage_and_tampered_csrs_are_refused() -> None:
    with pytest.raises(CsrRefused, match="PEM"):
        load_csr(b"not a csr")
    pem, _ = csr_for([str(REVIEWS)])
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrRefused, match="signature"):
        load_csr(tampered)


def test_a_certificate_from_a_foreign_ca_does_not_chain() -> None:
    ours, theirs = new_root("cluster.local", NOW), new_root("cluster.local", NOW)
    pem, _ = csr_for([])
    foreign = issue(theirs, load_csr(pem), REVIEWS, now=NOW, ttl=dt.timedelta(hours=1))
    with pytest.raises(ValueError, match=r"chain|signature"):
        verify_chain(foreign.certificate, [], [ours.certificate])


def store_at(path: Path, **kwargs: Any) -> CaStore:
    return CaStore(CaSettings(directory=path, trust_domain="cluster.local", **kwargs))


def test_the_root_is_made_once_and_its_key_is_private(tmp_path: Path) -> None:
    store = store_at(tmp_path / "ca")
    first = store.signer(NOW)
    assert store.signer(NOW).certificate == first.certificate
    [authority_id] = store.authority_ids()
    key_file = tmp_path / "ca" / "authorities" / authority_id / "root.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700


def _first_root(path: str, queue: Any) -> None:
    queue.put(store_at(Path(path)).signer(NOW).fingerprint)


def test_processes_starting_together_agree_on_one_root(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_first_root, args=(str(tmp_path / "ca"), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    fingerprints = {queue.get(timeout=60) for _ in workers}
    for worker in workers:
        worker.join(timeout=60)
    assert len(fingerprints) == 1
    assert len(store_at(tmp_path / "ca").authority_ids()) == 1


def test_rotation_adds_a_root_then_retiring_removes_the_old_one(tmp_path: Path) -> None:
    store = store_at(tmp_path / "ca")
    old = store.signer(NOW)
    new_id = store.rotate(NOW + dt.timedelta(seconds=1))
    assert store.active_id() == new_id
    new = store.signer(NOW)
    assert new.certificate != old.certificate
    # Both trusted while agents re-issue, the active one first.
    assert store.bundle(NOW) == [new.certificate, old.certificate]
    with pytest.raises(CaConfigurationError, match="active"):
        store.retire(new_id)
    [old_id] = [i for i in store.authority_ids() if i != new_id]
    store.retire(old_id)
    assert store.bundle(NOW) == [new.certificate]


def test_an_intermediate_is_kept_beside_its_root(tmp_path: Path) -> None:
    store = store_at(tmp_path / "ca", intermediate=True)
    signer = store.signer(NOW)
    assert signer.certificate != signer.root
    assert signer.chain == (signer.certificate,)
    assert store.bundle(NOW) == [signer.root]


def test_a_ca_from_a_mounted_secret_is_used_as_is_and_never_written(tmp_path: Path) -> None:
    root = new_root("cluster.local", NOW)
    intermediate = new_intermediate(root, "cluster.local", NOW)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "tls.crt").write_bytes(
        intermediate.certificate.public_bytes(serialization.Encoding.PEM)
        + root.certificate.public_bytes(serialization.Encoding.PEM)
    )
    (secret / "tls.key").write_bytes(
        intermediate.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    store = store_at(tmp_path / "ca", cert_file=secret / "tls.crt", key_file=secret / "tls.key")
    signer = store.signer(NOW)
    assert signer.certificate == intermediate.certificate
    assert signer.chain == (intermediate.certificate,)
    assert store.bundle(NOW) == [root.certificate]
    with pytest.raises(CaConfigurationError, match="Secret"):
        store.rotate(NOW)
    assert not (tmp_path / "ca").exists()
    assert signer.root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "meshui"
