"""Personal API tokens: shown once, stored hashed, revocable, expiring, with a last-used time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from meshui.accounts.models import ApiToken
from meshui.audit.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db


def _bearer(plain: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    return client


def test_it_shows_the_secret_once_and_stores_only_a_digest(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    session = APIClient()
    session.force_login(alice)
    created = session.post("/api/v1/tokens/", {"name": "ci"})
    assert created.status_code == 201, created.content
    plain = created.json()["token"]
    assert plain.startswith("mesh_")

    token = ApiToken.objects.get(pk=created.json()["id"])
    assert plain not in {token.digest, token.prefix, token.name}
    assert token.matches(plain)
    assert session.get(f"/api/v1/tokens/{token.pk}/").json()["token"] is None
    assert _bearer(plain).get("/api/v1/me/").json()["username"] == "alice"


def test_it_records_when_a_token_was_last_used(make_user: Callable[..., User]) -> None:
    token, plain = ApiToken.issue(make_user("alice"), "cli")
    assert token.last_used_at is None
    assert _bearer(plain).get("/api/v1/me/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)


def test_a_revoked_token_is_refused_and_the_refusal_audited(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    token, plain = ApiToken.issue(alice, "laptop")
    client = _bearer(plain)
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None, "revoking keeps the row"

    refused = client.get("/api/v1/me/")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Token has been revoked."
    assert AuditEvent.objects.filter(action=AuditAction.REVOKE, object_id=str(token.pk), actor=alice).exists()
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_FAILED, detail="Token has been revoked.").exists()


def test_an_expired_token_is_refused(make_user: Callable[..., User]) -> None:
    token, plain = ApiToken.issue(make_user("alice"), "short", expires_at=timezone.now() + timedelta(hours=1))
    assert _bearer(plain).get("/api/v1/me/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _bearer(plain).get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Token has expired."


@pytest.mark.parametrize("header", ["Bearer mesh_000000000000_nope", "Bearer not-a-token", "Bearer a b"])
def test_unknown_or_malformed_tokens_are_refused(header: str, make_user: Callable[..., User]) -> None:
    ApiToken.issue(make_user("alice"), "real")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/me/").status_code == 401


def test_a_token_with_the_right_prefix_but_wrong_secret_is_refused(make_user: Callable[..., User]) -> None:
    token, plain = ApiToken.issue(make_user("alice"), "real")
    forged = f"mesh_{token.prefix}_{'x' * 43}"
    assert forged != plain
    assert _bearer(forged).get("/api/v1/me/").status_code == 401


def test_a_token_of_a_deactivated_user_is_refused(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    _, plain = ApiToken.issue(alice, "cli")
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert _bearer(plain).get("/api/v1/me/").status_code == 401


def test_users_see_and_revoke_only_their_own_tokens(make_user: Callable[..., User]) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    bobs, _ = ApiToken.issue(bob, "bob's")
    _, alice_plain = ApiToken.issue(alice, "alice's")
    client = _bearer(alice_plain)
    assert [row["name"] for row in client.get("/api/v1/tokens/").json()["results"]] == ["alice's"]
    assert client.delete(f"/api/v1/tokens/{bobs.pk}/").status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_a_global_admin_can_revoke_anyones_token(make_user: Callable[..., User], admin_client: APIClient) -> None:
    bobs, bob_plain = ApiToken.issue(make_user("bob"), "bob's")
    assert admin_client.delete(f"/api/v1/tokens/{bobs.pk}/").status_code == 204
    assert _bearer(bob_plain).get("/api/v1/me/").status_code == 401


def test_an_expiry_in_the_past_is_refused(make_user: Callable[..., User]) -> None:
    client = APIClient()
    client.force_login(make_user("alice"))
    response = client.post("/api/v1/tokens/", {"name": "old", "expires_at": "2000-01-01T00:00:00Z"})
    assert response.status_code == 400
    assert response.json() == {"expires_at": ["Must be in the future."]}
    assert not ApiToken.objects.filter(name="old").exists()


def test_a_token_cannot_mint_another_token(make_user: Callable[..., User]) -> None:
    token, plain = ApiToken.issue(make_user("alice"), "expiring", expires_at=timezone.now() + timedelta(minutes=5))
    response = _bearer(plain).post("/api/v1/tokens/", {"name": "forever"})
    assert response.status_code == 403
    assert ApiToken.objects.filter(user=token.user).count() == 1
