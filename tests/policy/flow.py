"""Steps of the change-request flow through the REST API, as automation would take them."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

SPLIT_90_10 = {"split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}]}


def traffic_item(spec: dict[str, Any], operation: str = "create", service: str = "reviews") -> dict[str, Any]:
    return {"operation": operation, "kind": "traffic", "name": service, "service": service, "spec": spec}


def open_change(client: APIClient, items: list[dict[str, Any]], namespace: str = "alpha") -> Any:
    response = client.post(
        "/api/v1/change-requests/",
        {"namespace": namespace, "title": "Canary reviews v2", "items": items},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def act(client: APIClient, change_id: int, verb: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/api/v1/change-requests/{change_id}/{verb}/", body or {}, format="json")


def applied_change(cast: dict[str, Any], items: list[dict[str, Any]]) -> Any:
    """Open, submit, approve (by another user) and apply a change; the applied change request."""
    change = open_change(cast["editor"], items)
    act(cast["editor"], change["id"], "submit")
    act(cast["approver"], change["id"], "approve")
    response = act(cast["editor"], change["id"], "apply")
    assert response.status_code == 200, response.content
    return response.json()
