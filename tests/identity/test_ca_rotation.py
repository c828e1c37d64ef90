"""Rotating the CA: a new root signs, both are trusted until the old one is retired, agents hear of it."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Namespace
from meshui.rollout.models import MeshVersion
from meshui.rollout.snapshots import build_snapshot

pytestmark = pytest.mark.django_db


def bundle_of_snapshot() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(build_snapshot(MeshVersion.current()).trust_bundle_pem)


def test_rotation_through_the_api_reaches_agents_and_the_old_root_retires(admin_client: APIClient) -> None:
    before = admin_client.get("/api/v1/ca/").json()
    [old] = before["roots"]
    assert old["signing"] is True
    assert len(bundle_of_snapshot()) == 1
    version = MeshVersion.current()

    rotated = admin_client.post("/api/v1/ca/", {"operation": "rotate"}, format="json")
    assert rotated.status_code == 200, rotated.content
    roots = rotated.json()["roots"]
    assert [root["signing"] for root in roots] == [True, False]
    assert roots[1]["fingerprint_sha256"] == old["fingerprint_sha256"]
    assert MeshVersion.current() == version + 1  # a push carries the new bundle
    bundle = bundle_of_snapshot()
    assert [root.fingerprint(hashes.SHA256()).hex() for root in bundle] == [
        root["fingerprint_sha256"] for root in roots
    ]

    refused = admin_client.post("/api/v1/ca/", {"operation": "retire", "id": roots[0]["id"]}, format="json")
    assert refused.status_code == 409
    retired = admin_client.post("/api/v1/ca/", {"operation": "retire", "id": old["id"]}, format="json")
    assert [root["id"] for root in retired.json()["roots"]] == [roots[0]["id"]]
    assert len(bundle_of_snapshot()) == 1
    actions = list(AuditEvent.objects.filter(object_type="identity.ca_root").values_list("action", flat=True))
    assert sorted(actions) == [AuditAction.RETIRE, AuditAction.ROTATE]
    assert b"PRIVATE" not in admin_client.get("/api/v1/ca/").content


def test_only_global_admins_rotate(
    alpha: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    namespace_admin = client_for(make_user("ada", "admin", alpha))
    assert namespace_admin.get("/api/v1/ca/").status_code == 200
    assert namespace_admin.post("/api/v1/ca/", {"operation": "rotate"}, format="json").status_code == 403
    assert APIClient().get("/api/v1/ca/").status_code in (401, 403)


def test_bad_operations_get_field_errors(admin_client: APIClient) -> None:
    response = admin_client.post("/api/v1/ca/", {"operation": "retire"}, format="json")
    assert response.status_code == 400
    assert "id" in response.json()
    assert admin_client.post("/api/v1/ca/", {"operation": "explode"}, format="json").status_code == 400


def test_the_ca_command_shows_rotates_and_retires(settings: Any) -> None:
    out = StringIO()
    call_command("ca", "show", stdout=out)
    [first] = out.getvalue().split()[:1]
    call_command("ca", "rotate", stdout=StringIO())
    with pytest.raises(CommandError, match="no root"):
        call_command("ca", "retire", "nonsense", stdout=StringIO())
    call_command("ca", "retire", first, stdout=StringIO())
    out = StringIO()
    call_command("ca", "show", stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    assert "signing" in lines[0]
    assert first not in lines[0]
