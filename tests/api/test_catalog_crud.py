"""List, retrieve, create, update and delete for each catalog resource, checked against the database."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from meshui.catalog.models import Agent, Instance, Namespace, Service, Workload
from meshui.rollout.models import MeshVersion

pytestmark = pytest.mark.django_db


def test_it_manages_namespaces(admin_client: APIClient) -> None:
    created = admin_client.post("/api/v1/namespaces/", {"name": "shop", "labels": {"team": "payments"}})
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert Namespace.objects.get(pk=pk).labels == {"team": "payments"}

    assert [row["name"] for row in admin_client.get("/api/v1/namespaces/").json()["results"]] == ["shop"]
    assert admin_client.get(f"/api/v1/namespaces/{pk}/").json()["name"] == "shop"

    patched = admin_client.patch(f"/api/v1/namespaces/{pk}/", {"labels": {"team": "checkout"}})
    assert patched.status_code == 200
    assert Namespace.objects.get(pk=pk).labels == {"team": "checkout"}

    assert admin_client.delete(f"/api/v1/namespaces/{pk}/").status_code == 204
    assert not Namespace.objects.filter(pk=pk).exists()


def test_it_manages_services(admin_client: APIClient, alpha: Namespace) -> None:
    body = {"namespace": "alpha", "name": "reviews", "ports": [{"name": "http", "port": 9080, "protocol": "http"}]}
    created = admin_client.post("/api/v1/services/", body)
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    service = Service.objects.get(pk=pk)
    assert (service.namespace, service.name, service.ports[0]["port"]) == (alpha, "reviews", 9080)

    listed = admin_client.get("/api/v1/services/", {"namespace": "alpha"}).json()
    assert listed["count"] == 1
    assert listed["results"][0]["name"] == "reviews"
    assert admin_client.get("/api/v1/services/", {"namespace": "beta"}).json()["count"] == 0

    put = admin_client.put(f"/api/v1/services/{pk}/", {**body, "labels": {"tier": "backend"}})
    assert put.status_code == 200, put.content
    assert Service.objects.get(pk=pk).labels == {"tier": "backend"}

    assert admin_client.delete(f"/api/v1/services/{pk}/").status_code == 204
    assert not Service.objects.filter(pk=pk).exists()


def test_it_manages_workloads_and_instances(admin_client: APIClient, web_service: Service) -> None:
    workload = admin_client.post(
        "/api/v1/workloads/", {"service": web_service.pk, "name": "web-v2", "labels": {"version": "v2"}}
    )
    assert workload.status_code == 201, workload.content
    workload_id = workload.json()["id"]
    assert workload.json()["namespace"] == "alpha"
    assert Workload.objects.get(pk=workload_id).version == "v2"

    instance = admin_client.post("/api/v1/instances/", {"workload": workload_id, "address": "10.0.0.7", "port": 8080})
    assert instance.status_code == 201, instance.content
    instance_id = instance.json()["id"]
    assert admin_client.get(f"/api/v1/instances/{instance_id}/").json()["health"] == "unknown"

    assert admin_client.patch(f"/api/v1/instances/{instance_id}/", {"port": 8081}).status_code == 200
    assert Instance.objects.get(pk=instance_id).port == 8081
    assert admin_client.get("/api/v1/instances/", {"health": "unknown"}).json()["count"] == 1

    assert admin_client.delete(f"/api/v1/workloads/{workload_id}/").status_code == 204
    assert not Instance.objects.filter(pk=instance_id).exists(), "instances go with their workload"


def test_it_manages_agents(admin_client: APIClient, web_v1: Workload, alpha: Namespace) -> None:
    created = admin_client.post("/api/v1/agents/", {"agent_id": "web-v1-0", "namespace": "alpha", "version": "0.1.0"})
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert created.json()["instance"] is None

    assert admin_client.patch(f"/api/v1/agents/{pk}/", {"version": "0.2.0"}).status_code == 200
    assert Agent.objects.get(pk=pk).version == "0.2.0"
    assert admin_client.get("/api/v1/agents/", {"status": "connected"}).json()["count"] == 1
    assert admin_client.delete(f"/api/v1/agents/{pk}/").status_code == 204
    assert not Agent.objects.filter(pk=pk).exists()


def test_it_refuses_to_delete_a_namespace_that_still_holds_services(
    admin_client: APIClient, web_service: Service
) -> None:
    response = admin_client.delete(f"/api/v1/namespaces/{web_service.namespace_id}/")
    assert response.status_code == 409
    assert "web.alpha" in response.json()["detail"]
    assert Namespace.objects.filter(pk=web_service.namespace_id).exists()


def test_it_orders_and_pages_lists(admin_client: APIClient, alpha: Namespace) -> None:
    Service.objects.bulk_create(Service(namespace=alpha, name=f"svc-{i:02d}") for i in range(12))
    first: dict[str, Any] = admin_client.get("/api/v1/services/", {"ordering": "-name", "page_size": "5"}).json()
    assert first["count"] == 12
    assert [row["name"] for row in first["results"]] == [f"svc-{i:02d}" for i in range(11, 6, -1)]
    second = admin_client.get(first["next"]).json()
    assert [row["name"] for row in second["results"]] == [f"svc-{i:02d}" for i in range(6, 1, -1)]


def test_lists_do_not_grow_queries_with_rows(
    admin_client: APIClient, alpha: Namespace, django_assert_max_num_queries: Any
) -> None:
    service = Service.objects.create(namespace=alpha, name="api")
    for i in range(20):
        workload = Workload.objects.create(service=service, name=f"api-v{i}")
        Instance.objects.create(workload=workload, address=f"10.0.0.{i + 1}", port=80)
    # token lookup, token touch, bindings, count, page: the number must not depend on the 20 rows.
    with django_assert_max_num_queries(6):
        assert admin_client.get("/api/v1/workloads/").json()["count"] == 20
    with django_assert_max_num_queries(6):
        assert admin_client.get("/api/v1/instances/").json()["count"] == 20


def test_catalog_writes_bump_the_mesh_config_version(admin_client: APIClient, web_service: Service) -> None:
    before = MeshVersion.current()
    admin_client.patch(f"/api/v1/services/{web_service.pk}/", {"load_balancer": "least_request"})
    assert MeshVersion.current() == before + 1, "agents must hear about the new load balancer"
    admin_client.get(f"/api/v1/services/{web_service.pk}/")
    assert MeshVersion.current() == before + 1, "reads change nothing"
