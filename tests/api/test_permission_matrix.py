"""Role by namespace by action, generated from one table per resource.

Each row says what a role gets in a namespace its binding covers; anywhere
else it gets what a user with no role gets: the object does not exist (404),
and naming its namespace in a create is a 400 like any unknown namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Namespace, Service

pytestmark = pytest.mark.django_db

ACTIONS = ("retrieve", "create", "update", "delete")
NOWHERE = "no role"

SERVICE_MATRIX: dict[str, tuple[int, int, int, int]] = {
    #         retrieve create update delete
    "viewer": (200, 403, 403, 403),
    "editor": (200, 201, 200, 204),
    "approver": (200, 403, 403, 403),
    "admin": (200, 201, 200, 204),
    NOWHERE: (404, 400, 404, 404),
}

# Namespaces themselves: a namespace admin relabels it; creating and deleting need a global admin,
# so those two columns depend on the scope of the binding as well.
NAMESPACE_MATRIX: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("viewer", "alpha"): (200, 403, 403, 403),
    ("editor", "alpha"): (200, 403, 403, 403),
    ("approver", "alpha"): (200, 403, 403, 403),
    ("admin", "alpha"): (200, 403, 200, 403),
    ("viewer", "all"): (200, 403, 403, 403),
    ("editor", "all"): (200, 403, 403, 403),
    ("approver", "all"): (200, 403, 403, 403),
    ("admin", "all"): (200, 201, 200, 204),
}

ROLES = ("viewer", "editor", "approver", "admin")
SCOPES = ("alpha", "all")
TARGETS = ("alpha", "beta")


def _expected_for_service(role: str, scope: str, target: str, action: str) -> int:
    covered = scope == "all" or scope == target
    return SERVICE_MATRIX[role if covered else NOWHERE][ACTIONS.index(action)]


def _cases() -> list[tuple[str, str, str, str]]:
    return [(r, s, t, a) for r in ROLES for s in SCOPES for t in TARGETS for a in ACTIONS]


@pytest.fixture
def world(alpha: Namespace, beta: Namespace) -> dict[str, Namespace]:
    for namespace in (alpha, beta):
        Service.objects.create(namespace=namespace, name="web")
    return {"alpha": alpha, "beta": beta}


def _act_on_service(client: APIClient, action: str, namespace: Namespace) -> Any:
    service = Service.objects.get(namespace=namespace, name="web")
    url = f"/api/v1/services/{service.pk}/"
    if action == "retrieve":
        return client.get(url)
    if action == "create":
        return client.post("/api/v1/services/", {"namespace": namespace.name, "name": "new"})
    if action == "update":
        return client.patch(url, {"labels": {"touched": "yes"}})
    return client.delete(url)


@pytest.mark.parametrize(("role", "scope", "target", "action"), _cases())
def test_service_permissions(
    role: str,
    scope: str,
    target: str,
    action: str,
    world: dict[str, Namespace],
    make_user: Callable[..., User],
    client_for: Callable[[User], APIClient],
) -> None:
    user = make_user("u", role, None if scope == "all" else world[scope])
    expected = _expected_for_service(role, scope, target, action)
    response = _act_on_service(client_for(user), action, world[target])
    assert response.status_code == expected, response.content

    services = Service.objects.filter(namespace=world[target])
    changed = {
        "create": services.filter(name="new").exists(),
        "update": services.filter(labels__touched="yes").exists(),
        "delete": not services.filter(name="web").exists(),
        "retrieve": False,
    }[action]
    assert changed == (expected in {200, 201, 204} and action != "retrieve"), "a refused write must change nothing"
    denied = AuditEvent.objects.filter(action=AuditAction.DENIED, actor=user)
    assert denied.exists() == (expected == 403)


@pytest.mark.parametrize(("role", "scope"), [(r, s) for r in ROLES for s in SCOPES])
def test_lists_show_only_covered_namespaces(
    role: str,
    scope: str,
    world: dict[str, Namespace],
    make_user: Callable[..., User],
    client_for: Callable[[User], APIClient],
) -> None:
    user = make_user("u", role, None if scope == "all" else world[scope])
    client = client_for(user)
    expected = ["alpha", "beta"] if scope == "all" else [scope]
    assert [row["namespace"] for row in client.get("/api/v1/services/").json()["results"]] == expected
    assert [row["name"] for row in client.get("/api/v1/namespaces/").json()["results"]] == expected


@pytest.mark.parametrize(("role", "scope", "action"), [(r, s, a) for (r, s) in NAMESPACE_MATRIX for a in ACTIONS])
def test_namespace_permissions(
    role: str,
    scope: str,
    action: str,
    world: dict[str, Namespace],
    make_user: Callable[..., User],
    client_for: Callable[[User], APIClient],
) -> None:
    user = make_user("u", role, None if scope == "all" else world["alpha"])
    client = client_for(user)
    empty = Namespace.objects.create(name="empty")
    target = world["alpha"] if action in {"retrieve", "update"} else empty
    if scope == "alpha" and action == "delete":
        # A namespace admin of alpha, deleting alpha itself: still needs a global grant.
        target = world["alpha"]
    expected = NAMESPACE_MATRIX[(role, scope)][ACTIONS.index(action)]
    url = f"/api/v1/namespaces/{target.pk}/"
    response = {
        "retrieve": lambda: client.get(url),
        "create": lambda: client.post("/api/v1/namespaces/", {"name": "gamma"}),
        "update": lambda: client.patch(url, {"labels": {"owner": "team-a"}}),
        "delete": lambda: client.delete(url),
    }[action]()
    assert response.status_code == expected, response.content
    if expected == 403:
        assert AuditEvent.objects.filter(action=AuditAction.DENIED, actor=user).exists()
    assert Namespace.objects.filter(name="gamma").exists() == (action == "create" and expected == 201)


def test_a_user_without_roles_sees_nothing(
    world: dict[str, Namespace], make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    client = client_for(make_user("nobody"))
    for resource in ("namespaces", "services", "workloads", "instances", "agents"):
        response = client.get(f"/api/v1/{resource}/")
        assert response.status_code == 200
        assert response.json()["count"] == 0, resource


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/",
        "/api/v1/services/",
        "/api/v1/workloads/",
        "/api/v1/instances/",
        "/api/v1/agents/",
        "/api/v1/users/",
        "/api/v1/groups/",
        "/api/v1/role-bindings/",
        "/api/v1/tokens/",
        "/api/v1/audit-events/",
        "/api/v1/me/",
        "/api/schema/",
    ],
)
def test_unauthenticated_requests_are_refused(path: str, world: dict[str, Namespace]) -> None:
    client = APIClient()
    response = client.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.post(path, {"name": "x"}).status_code in {401, 405}


def test_the_docs_page_sends_anonymous_browsers_to_login(db: None) -> None:
    response = APIClient().get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/api/docs/")
