"""Join tokens (command and API) and issuing certificates against them: an agent gets only what its token grants."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Agent, Namespace
from meshui.identity.authority import CsrRefused, issue, load_csr, new_root, verify_chain
from meshui.identity.issuance import (
    CredentialRefusedError,
    JoinTokenCredential,
    RenewalCredential,
    bundle_pem,
    ca_store,
    do_issue_certificate,
)
from meshui.identity.models import IssuedCertificate, JoinToken
from meshui.identity.spiffe import SpiffeId
from tests.identity.test_certificate_authority import csr_for

pytestmark = pytest.mark.django_db

REVIEWS = "spiffe://cluster.local/ns/alpha/sa/reviews"


def token(namespace: Namespace, service_account: str = "", ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
    return JoinToken.issue(namespace, service_account, timezone.now() + ttl)[1]


def test_a_token_gets_a_certificate_for_the_identity_it_grants(alpha: Namespace) -> None:
    pem, _ = csr_for([REVIEWS])
    issued = do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")), agent_id="reviews-1")
    leaf, *rest = x509.load_pem_x509_certificates(issued.chain_pem)
    roots = x509.load_pem_x509_certificates(issued.bundle_pem)
    verify_chain(leaf, rest, roots)
    assert str(issued.spiffe_id) == REVIEWS
    record = IssuedCertificate.objects.get()
    assert (record.spiffe_id, record.agent_id, record.credential) == (REVIEWS, "reviews-1", "join_token")
    assert record.not_after == leaf.not_valid_after_utc
    assert JoinToken.objects.get().last_used_at is not None


def test_a_service_account_token_fills_in_the_identity(alpha: Namespace) -> None:
    pem, _ = csr_for([])
    issued = do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")))
    assert str(issued.spiffe_id) == REVIEWS


@pytest.mark.parametrize(
    ("service_account", "uris", "refusal"),
    [
        ("reviews", ["spiffe://cluster.local/ns/alpha/sa/admin"], CredentialRefusedError),
        ("", ["spiffe://cluster.local/ns/beta/sa/reviews"], CredentialRefusedError),
        ("", ["spiffe://evil.example/ns/alpha/sa/reviews"], CredentialRefusedError),
        ("", [], CsrRefused),
        ("", ["https://example.com/"], CsrRefused),
    ],
    ids=["other-account", "other-namespace", "other-trust-domain", "namespace-token-unnamed", "not-spiffe"],
)
def test_a_token_never_yields_an_identity_it_does_not_grant(
    alpha: Namespace, beta: Namespace, service_account: str, uris: list[str], refusal: type[Exception]
) -> None:
    pem, _ = csr_for(uris)
    with pytest.raises(refusal):
        do_issue_certificate(pem, JoinTokenCredential(token(alpha, service_account)))
    assert not IssuedCertificate.objects.exists()


def test_expired_revoked_and_forged_tokens_are_refused(alpha: Namespace) -> None:
    pem, _ = csr_for([REVIEWS])
    expired = token(alpha, ttl=dt.timedelta(seconds=-1))
    revoked = token(alpha)
    JoinToken.objects.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).update(revoked_at=timezone.now())
    good = token(alpha)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for plain in (expired, revoked, forged, "meshjoin_nothing", ""):
        with pytest.raises(CredentialRefusedError, match="unknown, expired or revoked"):
            do_issue_certificate(pem, JoinTokenCredential(plain))
    do_issue_certificate(pem, JoinTokenCredential(good))


def prove(key: Any, data: bytes) -> bytes:
    signature: bytes = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return signature


def test_renewal_keeps_the_identity_of_the_current_certificate(alpha: Namespace) -> None:
    first_csr, first_key = csr_for([])
    current = do_issue_certificate(first_csr, JoinTokenCredential(token(alpha, "reviews")), agent_id="reviews-1")
    renewal_csr, _ = csr_for([])
    renewed = do_issue_certificate(
        renewal_csr, RenewalCredential(current.chain_pem, prove(first_key, renewal_csr)), agent_id="reviews-1"
    )
    assert str(renewed.spiffe_id) == REVIEWS
    assert IssuedCertificate.objects.values_list("credential", flat=True).first() == "renewal"
    # A renewal cannot widen the identity, nor be made by anyone without the current key.
    wider, _ = csr_for(["spiffe://cluster.local/ns/alpha/sa/admin"])
    with pytest.raises(CsrRefused, match="grants"):
        do_issue_certificate(wider, RenewalCredential(current.chain_pem, prove(first_key, wider)))
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CredentialRefusedError, match="proof of possession"):
        do_issue_certificate(renewal_csr, RenewalCredential(current.chain_pem, prove(stranger, renewal_csr)))


def test_renewal_with_a_foreign_or_expired_certificate_is_refused(
    alpha: Namespace, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign_root = new_root("cluster.local", timezone.now())
    csr, key = csr_for([])
    foreign = issue(foreign_root, load_csr(csr), SpiffeId.parse(REVIEWS), now=timezone.now(), ttl=dt.timedelta(hours=1))
    with pytest.raises(CredentialRefusedError, match="not one of this mesh's"):
        do_issue_certificate(csr, RenewalCredential(foreign.chain_pem, prove(key, csr)))
    settings.MESH_CERT_TTL_HOURS = 1
    current = do_issue_certificate(csr, JoinTokenCredential(token(alpha, "reviews")))
    later = timezone.now() + dt.timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with pytest.raises(CredentialRefusedError, match="expired"):
        do_issue_certificate(csr, RenewalCredential(current.chain_pem, prove(key, csr)))


def test_the_command_creates_prints_lists_and_revokes(alpha: Namespace) -> None:
    out, err = StringIO(), StringIO()
    call_command(
        "jointoken", "create", "--namespace", "gamma", "--service-account", "web", "--ttl", "2h", stdout=out, stderr=err
    )
    plain = out.getvalue().strip()
    created = JoinToken.find(plain, timezone.now())
    assert created is not None
    assert created.namespace.name == "gamma"
    assert created.service_account == "web"
    assert dt.timedelta(hours=1, minutes=59) < created.expires_at - timezone.now() <= dt.timedelta(hours=2)
    listing = StringIO()
    call_command("jointoken", "list", stdout=listing)
    assert f"{created.prefix}  gamma/web  usable" in listing.getvalue()
    assert plain not in listing.getvalue()
    call_command("jointoken", "revoke", created.prefix, stdout=StringIO())
    assert JoinToken.find(plain, timezone.now()) is None
    with pytest.raises(CommandError, match="duration"):
        call_command("jointoken", "create", "--namespace", "alpha", "--ttl", "forever", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("jointoken", "create", "--namespace", "Not A Label", stdout=StringIO())


def test_admins_manage_join_tokens_through_the_api(
    alpha: Namespace, beta: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    admin = client_for(make_user("ada", "admin", alpha))
    editor = client_for(make_user("erin", "editor", alpha))
    created = admin.post("/api/v1/join-tokens/", {"namespace": "alpha", "service_account": "web", "ttl": "12h"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["token"].startswith("meshjoin_")
    assert body["state"] == "usable"
    listed = admin.get("/api/v1/join-tokens/").json()["results"]
    assert [row["prefix"] for row in listed] == [body["prefix"]]
    assert "token" not in listed[0]
    assert not JoinToken.objects.filter(digest=body["token"]).exists()  # only a digest is stored
    assert editor.get("/api/v1/join-tokens/").json()["results"] == []
    assert editor.post("/api/v1/join-tokens/", {"namespace": "alpha"}).status_code == 403
    assert admin.post("/api/v1/join-tokens/", {"namespace": "beta"}).status_code == 400  # beta is not visible
    too_long = admin.post("/api/v1/join-tokens/", {"namespace": "alpha", "ttl": "90d"})
    assert too_long.status_code == 400
    assert "30 days" in too_long.json()["ttl"][0]
    assert admin.delete(f"/api/v1/join-tokens/{body['id']}/").status_code == 204
    assert JoinToken.find(body["token"], timezone.now()) is None
    assert AuditEvent.objects.filter(object_type="identity.jointoken", action=AuditAction.REVOKE).count() == 1


def test_viewers_see_issued_certificates_of_their_namespaces(
    alpha: Namespace, beta: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    pem, _ = csr_for([])
    do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")), agent_id="reviews-1")
    do_issue_certificate(pem, JoinTokenCredential(token(beta, "batch")), agent_id="batch-1")
    viewer = client_for(make_user("vera", "viewer", alpha))
    rows = viewer.get("/api/v1/certificates/").json()["results"]
    assert [(row["agent_id"], row["spiffe_id"]) for row in rows] == [("reviews-1", REVIEWS)]
    assert all("key" not in field for field in rows[0])


def test_tokens_and_certificates_filter_by_namespace_name(
    alpha: Namespace, beta: Namespace, admin_client: APIClient
) -> None:
    pem, _ = csr_for([])
    do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")), agent_id="reviews-1")
    do_issue_certificate(pem, JoinTokenCredential(token(beta, "batch")), agent_id="batch-1")
    for namespace, agent in [("alpha", "reviews-1"), ("beta", "batch-1")]:
        certificates = admin_client.get("/api/v1/certificates/", {"namespace": namespace}).json()["results"]
        assert [row["agent_id"] for row in certificates] == [agent]
        tokens = admin_client.get("/api/v1/join-tokens/", {"namespace": namespace}).json()["results"]
        assert [row["namespace"] for row in tokens] == [namespace]
    assert admin_client.get("/api/v1/join-tokens/", {"namespace": "gamma"}).json()["results"] == []


def test_the_private_key_is_never_served(admin_client: APIClient, alpha: Namespace, ca_dir: Any) -> None:
    pem, _ = csr_for([])
    do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")))
    keys = [path.read_bytes() for path in ca_dir.rglob("*.key")]
    assert keys
    schema = admin_client.get("/api/schema/")
    for path in ["/api/v1/certificates/", "/api/v1/join-tokens/", "/api/schema/"]:
        body = admin_client.get(path).content
        assert b"PRIVATE KEY" not in body
        assert not any(key in body for key in keys)
    assert schema.status_code == 200


def test_agents_show_the_certificate_they_were_last_issued(alpha: Namespace, admin_client: APIClient) -> None:
    Agent.objects.create(agent_id="reviews-1", namespace=alpha)
    Agent.objects.create(agent_id="web-1", namespace=alpha)
    pem, _ = csr_for([])
    do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")), agent_id="reviews-1")
    latest = do_issue_certificate(pem, JoinTokenCredential(token(alpha, "reviews")), agent_id="reviews-1")
    rows = {row["agent_id"]: row for row in admin_client.get("/api/v1/agents/").json()["results"]}
    assert rows["reviews-1"]["certificate_spiffe_id"] == REVIEWS
    assert (
        dt.datetime.fromisoformat(rows["reviews-1"]["certificate_not_after"].replace("Z", "+00:00")) == latest.not_after
    )
    assert rows["web-1"]["certificate_spiffe_id"] is None


def test_the_demo_gets_a_token_per_workload_readable_only_by_its_user(tmp_path: Any) -> None:
    out = tmp_path / "identity"
    call_command("demo_identity", "--out", str(out), "shop/web", "jobs/batch", stdout=StringIO())
    token_file = out / "join-tokens.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    tokens = json.loads(token_file.read_text())
    assert sorted(tokens) == ["jobs/batch", "shop/web"]
    for workload, plain in tokens.items():
        found = JoinToken.find(plain, timezone.now())
        assert found is not None
        namespace, account = workload.split("/")
        assert found.grants(namespace, account)
        assert not found.grants(namespace, "admin")
    assert (out / "trust-bundle.pem").read_bytes() == bundle_pem(ca_store(), timezone.now())
    with pytest.raises(CommandError):
        call_command("demo_identity", "--out", str(out), "Not/A Label", stdout=StringIO())
