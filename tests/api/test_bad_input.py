"""Bad input gets a 400 with a message per field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from meshui.audit.models import AuditEvent
from meshui.catalog.models import Agent, Namespace, Service, Workload

pytestmark = pytest.mark.django_db


def _assert_nothing_written() -> None:
    assert not Service.objects.exists()
    assert not AuditEvent.objects.exists()


def test_malformed_json_is_a_400(admin_client: APIClient, alpha: Namespace) -> None:
    response = admin_client.post(
        "/api/v1/services/", '{"namespace": "alpha", "name": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    _assert_nothing_written()


def test_a_body_that_is_not_an_object_is_a_400(admin_client: APIClient, alpha: Namespace) -> None:
    response = admin_client.post("/api/v1/services/", ["web"], format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    _assert_nothing_written()


def test_other_content_types_are_refused(admin_client: APIClient, alpha: Namespace) -> None:
    response = admin_client.post("/api/v1/services/", "namespace=alpha&name=web", content_type="text/plain")
    assert response.status_code == 415
    _assert_nothing_written()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"namespace": "alpha", "name": "web", "replicas": 3}, "replicas", "Unknown field."),
        ({"namespace": "alpha", "name": "w" * 64}, "name", "Ensure this field has no more than 63 characters."),
        ({"namespace": "alpha", "name": "Web_Server"}, "name", "Use lowercase letters"),
        ({"namespace": "alpha", "name": 12}, "name", "Not a valid string."),
        ({"namespace": "nope", "name": "web"}, "namespace", "Object with name=nope does not exist."),
        ({"namespace": "alpha", "name": "web", "ports": "8080"}, "ports", "Ports must be a list."),
        ({"namespace": "alpha", "name": "web", "ports": [{"port": 70000}]}, "ports", "from 1 to 65535"),
        ({"namespace": "alpha", "name": "web", "ports": [{"port": 80}, {"port": 80}]}, "ports", "repeats"),
        ({"namespace": "alpha", "name": "web", "labels": ["a"]}, "labels", "must be an object"),
        ({"namespace": "alpha", "name": "web", "labels": {"app": 3}}, "labels", "must have a string value"),
        ({"namespace": "alpha", "name": "web", "labels": {"bad key!": "x"}}, "labels", "Invalid label name"),
        ({"namespace": "alpha"}, "name", "This field is required."),
    ],
)
def test_invalid_services_get_field_messages(
    admin_client: APIClient, alpha: Namespace, body: dict[str, Any], field: str, message: str
) -> None:
    response = admin_client.post("/api/v1/services/", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert any(message in str(item) for item in errors[field]), errors
    _assert_nothing_written()


def test_duplicate_names_in_a_namespace_are_refused(admin_client: APIClient, web_service: Service) -> None:
    response = admin_client.post("/api/v1/services/", {"namespace": "alpha", "name": "web"})
    assert response.status_code == 400
    assert "unique" in str(response.json()["non_field_errors"])
    assert Service.objects.count() == 1


def test_identity_fields_cannot_change(admin_client: APIClient, web_service: Service, beta: Namespace) -> None:
    response = admin_client.patch(f"/api/v1/services/{web_service.pk}/", {"namespace": "beta", "name": "web2"})
    assert response.status_code == 400
    assert response.json() == {
        "namespace": ["This field cannot be changed after creation."],
        "name": ["This field cannot be changed after creation."],
    }
    web_service.refresh_from_db()
    assert (web_service.namespace.name, web_service.name) == ("alpha", "web")


def test_a_failed_update_changes_nothing(admin_client: APIClient, web_service: Service) -> None:
    before = Service.objects.values().get(pk=web_service.pk)
    response = admin_client.patch(
        f"/api/v1/services/{web_service.pk}/", {"labels": {"ok": "yes"}, "ports": [{"port": 0}]}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["ports"]
    assert Service.objects.values().get(pk=web_service.pk) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "not an address!", "port": 80}, "address"),
        ({"address": "10.0.0.1", "port": 0}, "port"),
        ({"address": "10.0.0.1", "port": "eighty"}, "port"),
    ],
)
def test_invalid_instances_get_field_messages(
    admin_client: APIClient, web_v1: Workload, body: dict[str, Any], field: str
) -> None:
    response = admin_client.post("/api/v1/instances/", {"workload": web_v1.pk, **body}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not web_v1.instances.exists()


def test_server_owned_agent_fields_cannot_be_set(admin_client: APIClient, web_v1: Workload) -> None:
    created = admin_client.post(
        "/api/v1/agents/",
        {"agent_id": "a-1", "namespace": "alpha", "admin_address": "evil.example:443", "status": "stale"},
    )
    assert created.status_code == 201, created.content
    agent = Agent.objects.get(agent_id="a-1")
    assert (agent.admin_address, agent.status) == ("", "connected"), "sent but ignored: read-only"
    admin_client.patch(f"/api/v1/agents/{agent.pk}/", {"admin_address": "10.9.9.9:15000", "config_version": None})
    agent.refresh_from_db()
    assert agent.admin_address == ""


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/instances/", {"address": "10.0.0.1", "port": "80"}, "port"),
        ("/api/v1/instances/", {"address": "10.0.0.1", "port": True}, "port"),
        ("/api/v1/instances/", {"address": ["10.0.0.1"], "port": 80}, "address"),
    ],
)
def test_json_types_are_checked_not_coerced(
    admin_client: APIClient, web_v1: Workload, path: str, body: dict[str, Any], field: str
) -> None:
    response = admin_client.post(path, {"workload": web_v1.pk, **body}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not web_v1.instances.exists()


def test_users_is_active_must_be_a_boolean(admin_client: APIClient) -> None:
    response = admin_client.post("/api/v1/users/", {"username": "zed", "is_active": "yes"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["is_active"]
