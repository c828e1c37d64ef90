"""CSRs from the corpus: a join token never yields an identity it does not grant."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from meshui.catalog.models import Namespace
from meshui.identity.authority import CsrRefused
from meshui.identity.issuance import CredentialRefusedError, JoinTokenCredential, do_issue_certificate
from meshui.identity.models import IssuedCertificate, JoinToken
from tests.identity.test_certificate_authority import csr_for
from tests.security import corpus

pytestmark = pytest.mark.django_db


def _token(case: dict[str, Any]) -> str:
    namespace, _ = Namespace.objects.get_or_create(name=corpus.NAMESPACE)
    ttl = dt.timedelta(seconds=-1) if case.get("token") == "expired" else dt.timedelta(hours=1)
    token, plain = JoinToken.issue(namespace, case["token_sa"], timezone.now() + ttl)
    if case.get("token") == "revoked":
        JoinToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    if case.get("token") == "forged":
        plain = plain[:-6] + ("A" * 6 if not plain.endswith("A" * 6) else "B" * 6)
    return plain


@pytest.mark.parametrize("case", corpus.load()["csrs"], ids=lambda case: case["name"])
def test_csr_case(case: dict[str, Any]) -> None:
    key = rsa.generate_private_key(65537, 1024) if case.get("key") == "rsa1024" else None  # noqa: S505 - on purpose
    pem, _ = csr_for(case["requests"], key=key, dns=case.get("dns"))
    try:
        issued = do_issue_certificate(pem, JoinTokenCredential(_token(case)))
    except (CsrRefused, CredentialRefusedError):
        outcome = "refused"
    else:
        outcome = "issued"
        granted = {f"spiffe://cluster.local/ns/{corpus.NAMESPACE}/sa/{case['token_sa'] or '?'}"}
        assert str(issued.spiffe_id) in granted
    corpus.record("csr", case["name"], outcome == "issued" and case["expect"] != "issued")
    assert outcome == case["expect"]
    assert IssuedCertificate.objects.count() == (1 if outcome == "issued" else 0)
