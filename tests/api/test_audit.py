"""The audit log: a row for every write and every refusal, readable but never writable."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshui.audit.models import AuditAction, AuditEvent, digest
from meshui.catalog.models import Namespace, Service

pytestmark = pytest.mark.django_db


def test_each_write_leaves_one_event_with_digests(admin_client: APIClient, admin_user: User, alpha: Namespace) -> None:
    created = admin_client.post("/api/v1/services/", {"namespace": "alpha", "name": "cart"}, REMOTE_ADDR="10.1.2.3")
    pk = created.json()["id"]
    admin_client.patch(f"/api/v1/services/{pk}/", {"labels": {"tier": "web"}})
    admin_client.delete(f"/api/v1/services/{pk}/")

    events = list(AuditEvent.objects.filter(object_type="catalog.service", object_id=str(pk)).order_by("id"))
    assert [e.action for e in events] == [AuditAction.CREATE, AuditAction.UPDATE, AuditAction.DELETE]
    create, update, delete = events
    assert create.actor == admin_user
    assert create.actor_name == "root"
    assert create.source_ip == "10.1.2.3"
    assert create.namespace_name == "alpha"
    assert create.after_digest == digest(created.json())
    assert create.before_digest == ""
    assert update.before_digest == create.after_digest
    assert update.after_digest not in {"", update.before_digest}
    assert delete.before_digest == update.after_digest
    assert delete.after_digest == ""
    offset = create.occurred_at.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0


def test_a_refused_write_leaves_a_denied_event(
    alpha: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    viewer = make_user("vic", "viewer", alpha)
    response = client_for(viewer).post("/api/v1/services/", {"namespace": "alpha", "name": "cart"})
    assert response.status_code == 403
    event = AuditEvent.objects.get(action=AuditAction.DENIED)
    assert (event.actor, event.namespace, event.request_method, event.request_path) == (
        viewer,
        alpha,
        "POST",
        "/api/v1/services/",
    )
    assert not Service.objects.exists()


def test_the_log_is_read_only_through_the_api(admin_client: APIClient, alpha: Namespace) -> None:
    admin_client.patch(f"/api/v1/namespaces/{alpha.pk}/", {"labels": {"a": "b"}})
    event = AuditEvent.objects.get()
    assert admin_client.get("/api/v1/audit-events/").json()["results"][0]["id"] == event.pk
    assert admin_client.post("/api/v1/audit-events/", {"action": "create"}).status_code == 405
    assert admin_client.put(f"/api/v1/audit-events/{event.pk}/", {"detail": "x"}).status_code == 405
    assert admin_client.delete(f"/api/v1/audit-events/{event.pk}/").status_code == 405
    assert AuditEvent.objects.count() == 1


def test_namespace_admins_read_only_their_namespace_events(
    alpha: Namespace,
    beta: Namespace,
    admin_client: APIClient,
    make_user: Callable[..., User],
    client_for: Callable[[User], APIClient],
) -> None:
    for namespace in ("alpha", "beta"):
        admin_client.post("/api/v1/services/", {"namespace": namespace, "name": "svc"})
    ada = make_user("ada", "admin", alpha)
    rows = client_for(ada).get("/api/v1/audit-events/").json()["results"]
    assert {row["namespace"] for row in rows} == {"alpha"}

    editor = make_user("ed", "editor", alpha)
    assert client_for(editor).get("/api/v1/audit-events/").json()["count"] == 0


def test_the_log_filters_by_actor_and_action(
    admin_client: APIClient, alpha: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    client_for(make_user("vic", "viewer", alpha)).delete(f"/api/v1/namespaces/{alpha.pk}/")
    admin_client.patch(f"/api/v1/namespaces/{alpha.pk}/", {"labels": {"x": "y"}})
    denied = admin_client.get("/api/v1/audit-events/", {"action": "denied"}).json()["results"]
    assert [row["actor"] for row in denied] == ["vic"]
    by_root = admin_client.get("/api/v1/audit-events/", {"actor": "root"}).json()["results"]
    assert [row["action"] for row in by_root] == ["update"]
