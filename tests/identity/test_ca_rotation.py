"""Rotating the CA: requested, approved by a second person, applied; a new root signs, both are trusted until the
old one is retired (reviewed the same way), agents hear of it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Namespace
from meshui.identity.models import CaChange
from meshui.identity.tasks import expire_ca_changes
from meshui.policy.models import ApprovalRule
from meshui.rollout.models import MeshVersion
from meshui.rollout.snapshots import build_snapshot

pytestmark = pytest.mark.django_db


def bundle_of_snapshot() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(build_snapshot(MeshVersion.current()).trust_bundle_pem)


@pytest.fixture
def approver(make_user: Callable[..., User], client_for: Callable[[User], APIClient]) -> APIClient:
    """Someone who may approve in every namespace (a global approver), not the admin who requests."""
    return client_for(make_user("vera", "approver", None))


def _request(client: APIClient, **body: Any) -> Any:
    return client.post("/api/v1/ca-changes/", body, format="json")


def test_a_rotation_applies_with_another_persons_approval_and_reaches_agents(
    admin_client: APIClient, approver: APIClient
) -> None:
    [old] = admin_client.get("/api/v1/ca/").json()["roots"]
    assert old["signing"] is True
    assert len(bundle_of_snapshot()) == 1
    version = MeshVersion.current()

    requested = _request(admin_client, operation="rotate", reason="yearly rotation")
    assert requested.status_code == 201, requested.content
    change = requested.json()
    assert (change["state"], change["required_approvals"], change["requested_by"]) == ("pending", 1, "root")
    assert admin_client.get("/api/v1/ca/").json()["roots"] == [old]  # nothing changes before approval
    assert MeshVersion.current() == version
    own = admin_client.post(f"/api/v1/ca-changes/{change['id']}/approve/")
    assert own.status_code == 403
    assert "your own" in own.json()["detail"]

    approved = approver.post(f"/api/v1/ca-changes/{change['id']}/approve/")
    assert approved.status_code == 200, approved.content
    assert approved.json()["state"] == "applied"
    assert [a["approver"] for a in approved.json()["approvals"]] == ["vera"]
    roots = admin_client.get("/api/v1/ca/").json()["roots"]
    assert [root["signing"] for root in roots] == [True, False]
    assert roots[1]["fingerprint_sha256"] == old["fingerprint_sha256"]
    assert approved.json()["new_root_id"] == roots[0]["id"]
    assert MeshVersion.current() == version + 1  # a push carries the new bundle
    assert [root.fingerprint(hashes.SHA256()).hex() for root in bundle_of_snapshot()] == [
        root["fingerprint_sha256"] for root in roots
    ]

    retirement = _request(admin_client, operation="retire", id=old["id"]).json()
    assert approver.post(f"/api/v1/ca-changes/{retirement['id']}/approve/").json()["state"] == "applied"
    assert [root["id"] for root in admin_client.get("/api/v1/ca/").json()["roots"]] == [roots[0]["id"]]
    assert len(bundle_of_snapshot()) == 1
    actions = list(AuditEvent.objects.filter(object_type="identity.ca_root").values_list("action", flat=True))
    assert sorted(actions) == [AuditAction.RETIRE, AuditAction.ROTATE]
    review = AuditEvent.objects.filter(object_type="identity.cachange").order_by("id").values_list("action", flat=True)
    assert list(review) == [AuditAction.SUBMIT, AuditAction.APPROVE, AuditAction.APPLY] * 2
    assert b"PRIVATE" not in admin_client.get("/api/v1/ca/").content


def test_only_admins_of_every_namespace_request_and_only_approvers_of_every_namespace_approve(
    alpha: Namespace, admin_client: APIClient, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    namespace_admin = client_for(make_user("ada", "admin", alpha))
    namespace_approver = client_for(make_user("noor", "approver", alpha))
    assert namespace_admin.get("/api/v1/ca/").status_code == 200
    assert _request(namespace_admin, operation="rotate").status_code == 403
    change = _request(admin_client, operation="rotate").json()
    # Approving in one namespace is not enough for what every namespace trusts; such a user does not see it.
    assert namespace_approver.post(f"/api/v1/ca-changes/{change['id']}/approve/").status_code == 404
    assert namespace_approver.get("/api/v1/ca-changes/").json()["results"] == []
    assert admin_client.get(f"/api/v1/ca-changes/{change['id']}/").json()["state"] == "pending"
    assert APIClient().get("/api/v1/ca-changes/").status_code in (401, 403)
    assert admin_client.post("/api/v1/ca/", {"operation": "rotate"}, format="json").status_code == 405


def test_the_strictest_namespace_sets_how_many_approvals_and_each_person_counts_once(
    alpha: Namespace, beta: Namespace, admin_client: APIClient, approver: APIClient, make_user: Callable[..., User],
    client_for: Callable[[User], APIClient],
) -> None:  # fmt: skip
    ApprovalRule.objects.create(namespace=alpha, required_approvals=2)
    change = _request(admin_client, operation="rotate").json()
    assert change["required_approvals"] == 2
    first = approver.post(f"/api/v1/ca-changes/{change['id']}/approve/")
    assert first.json()["state"] == "pending"
    again = approver.post(f"/api/v1/ca-changes/{change['id']}/approve/")
    assert again.status_code == 409
    assert len(admin_client.get("/api/v1/ca/").json()["roots"]) == 1
    second = client_for(make_user("wes", "admin", None)).post(f"/api/v1/ca-changes/{change['id']}/approve/")
    assert second.json()["state"] == "applied"
    assert len(admin_client.get("/api/v1/ca/").json()["roots"]) == 2


def test_a_change_can_be_rejected_withdrawn_or_left_to_expire_and_then_never_applies(
    admin_client: APIClient, approver: APIClient
) -> None:
    rejected = _request(admin_client, operation="rotate").json()
    assert approver.post(f"/api/v1/ca-changes/{rejected['id']}/reject/", {}, format="json").status_code == 400
    decision = approver.post(f"/api/v1/ca-changes/{rejected['id']}/reject/", {"reason": "not now"}, format="json")
    assert (decision.json()["state"], decision.json()["decision_reason"]) == ("rejected", "not now")
    assert approver.post(f"/api/v1/ca-changes/{rejected['id']}/approve/").status_code == 409

    withdrawn = _request(admin_client, operation="rotate").json()
    assert approver.post(f"/api/v1/ca-changes/{withdrawn['id']}/withdraw/").status_code == 403
    assert admin_client.post(f"/api/v1/ca-changes/{withdrawn['id']}/withdraw/").json()["state"] == "withdrawn"
    assert approver.post(f"/api/v1/ca-changes/{withdrawn['id']}/approve/").status_code == 409

    expired = _request(admin_client, operation="rotate").json()
    CaChange.objects.filter(pk=expired["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    late = approver.post(f"/api/v1/ca-changes/{expired['id']}/approve/")
    assert late.status_code == 409
    assert admin_client.get(f"/api/v1/ca-changes/{expired['id']}/").json()["state"] == "expired"
    assert AuditEvent.objects.filter(object_type="identity.cachange", action=AuditAction.EXPIRE).count() == 1
    # The periodic sweep expires those nobody acted on, so none is listed as pending past its deadline.
    forgotten = _request(admin_client, operation="rotate").json()
    CaChange.objects.filter(pk=forgotten["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert expire_ca_changes() == 1
    assert admin_client.get(f"/api/v1/ca-changes/{forgotten['id']}/").json()["state"] == "expired"
    assert AuditEvent.objects.filter(object_type="identity.cachange", action=AuditAction.EXPIRE).count() == 2
    assert len(admin_client.get("/api/v1/ca/").json()["roots"]) == 1


def test_an_admin_applies_an_emergency_change_at_once_with_a_reason_that_is_audited(
    admin_client: APIClient, approver: APIClient
) -> None:
    assert len(admin_client.get("/api/v1/ca/").json()["roots"]) == 1
    blank = _request(admin_client, operation="rotate", emergency_reason="  ")
    assert blank.status_code == 400
    assert "emergency_reason" in blank.json()
    assert _request(approver, operation="rotate", emergency_reason="key leaked").status_code == 403

    applied = _request(admin_client, operation="rotate", emergency_reason="the old key leaked")
    assert applied.status_code == 201
    assert (applied.json()["state"], applied.json()["emergency_reason"]) == ("applied", "the old key leaked")
    assert len(admin_client.get("/api/v1/ca/").json()["roots"]) == 2
    emergency = AuditEvent.objects.filter(object_type="identity.cachange", action=AuditAction.EMERGENCY_APPLY)
    assert emergency.count() == 1


def test_bad_requests_get_field_errors_and_change_nothing(admin_client: APIClient) -> None:
    [signing] = admin_client.get("/api/v1/ca/").json()["roots"]
    cases = [
        ({"operation": "retire"}, "id"),
        ({"operation": "retire", "id": "nonsense"}, "id"),
        ({"operation": "retire", "id": signing["id"]}, "id"),
        ({"operation": "rotate", "id": signing["id"]}, "id"),
        ({"operation": "explode"}, "operation"),
        ({"operation": "rotate", "surprise": 1}, "surprise"),
        ({"operation": "rotate", "reason": 7}, "reason"),
    ]
    for body, field in cases:
        response = _request(admin_client, **body)
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())
    assert CaChange.objects.count() == 0


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
