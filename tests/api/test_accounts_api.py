"""Users, groups and role bindings through the API, and what a binding grants."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from meshui.accounts.models import RoleBinding
from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Namespace

pytestmark = pytest.mark.django_db


def test_admins_manage_users(admin_client: APIClient) -> None:
    Group.objects.create(name="sre")
    created = admin_client.post(
        "/api/v1/users/", {"username": "carol", "password": "a sufficiently long pass", "groups": ["sre"]}
    )
    assert created.status_code == 201, created.content
    assert "password" not in created.json()
    carol = User.objects.get(username="carol")
    assert carol.check_password("a sufficiently long pass")
    assert list(carol.groups.values_list("name", flat=True)) == ["sre"]

    assert admin_client.patch(f"/api/v1/users/{carol.pk}/", {"is_active": False}).status_code == 200
    carol.refresh_from_db()
    assert carol.is_active is False
    assert admin_client.get("/api/v1/users/", {"username": "carol"}).json()["count"] == 1
    assert admin_client.delete(f"/api/v1/users/{carol.pk}/").status_code == 204
    assert not User.objects.filter(username="carol").exists()


def test_weak_passwords_are_refused_with_the_reason(admin_client: APIClient) -> None:
    response = admin_client.post("/api/v1/users/", {"username": "dave", "password": "password"})
    assert response.status_code == 400
    assert "This password is too common." in response.json()["password"]
    assert not User.objects.filter(username="dave").exists()


def test_only_global_admins_manage_users_and_groups(
    alpha: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    client = client_for(make_user("ada", "admin", alpha))
    assert client.get("/api/v1/users/").status_code == 403
    assert client.post("/api/v1/groups/", {"name": "x"}).status_code == 403
    assert not Group.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.DENIED).count() == 2


def test_namespace_admins_grant_roles_only_in_their_namespace(
    alpha: Namespace, beta: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    client = client_for(make_user("ada", "admin", alpha))
    make_user("bob")
    granted = client.post("/api/v1/role-bindings/", {"user": "bob", "role": "editor", "namespace": "alpha"})
    assert granted.status_code == 201, granted.content
    assert granted.json()["created_by"] == "ada"

    assert (
        client.post("/api/v1/role-bindings/", {"user": "bob", "role": "editor", "namespace": "beta"}).status_code == 400
    )
    assert client.post("/api/v1/role-bindings/", {"user": "bob", "role": "admin", "namespace": None}).status_code == 403
    assert list(RoleBinding.objects.filter(user__username="bob").values_list("role", "namespace__name")) == [
        ("editor", "alpha")
    ]


def test_bindings_are_granted_and_withdrawn_not_edited(admin_client: APIClient, make_user: Callable[..., User]) -> None:
    make_user("bob")
    pk = admin_client.post("/api/v1/role-bindings/", {"user": "bob", "role": "viewer"}).json()["id"]
    assert admin_client.patch(f"/api/v1/role-bindings/{pk}/", {"role": "admin"}).status_code == 405
    assert admin_client.delete(f"/api/v1/role-bindings/{pk}/").status_code == 204
    assert not RoleBinding.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "viewer"}, "user"),
        ({"user": "bob", "group": "sre", "role": "viewer"}, "user"),
        ({"user": "bob", "role": "owner"}, "role"),
        ({"user": "nobody", "role": "viewer"}, "user"),
    ],
)
def test_bad_bindings_are_refused(
    admin_client: APIClient, make_user: Callable[..., User], body: dict[str, str], field: str
) -> None:
    make_user("bob")
    Group.objects.create(name="sre")
    response = admin_client.post("/api/v1/role-bindings/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert not RoleBinding.objects.exists()


def test_a_duplicate_binding_is_refused(admin_client: APIClient, make_user: Callable[..., User]) -> None:
    make_user("bob", "viewer", None)
    response = admin_client.post("/api/v1/role-bindings/", {"user": "bob", "role": "viewer"})
    assert response.status_code == 400
    assert response.json() == {"role": ["This role is already granted there."]}


def test_a_group_binding_grants_its_members(
    alpha: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    sre = Group.objects.create(name="sre")
    RoleBinding.objects.create(group=sre, role="editor", namespace=alpha)
    erin = make_user("erin")
    client = client_for(erin)
    assert client.post("/api/v1/services/", {"namespace": "alpha", "name": "api"}).status_code == 400
    erin.groups.add(sre)
    assert client.post("/api/v1/services/", {"namespace": "alpha", "name": "api"}).status_code == 201


def test_me_says_what_the_caller_may_do(
    alpha: Namespace, beta: Namespace, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    user = make_user("eve", "editor", alpha)
    RoleBinding.objects.create(user=user, role="viewer", namespace=None)
    me = client_for(user).get("/api/v1/me/").json()
    assert me == {
        "username": "eve",
        "is_superuser": False,
        "capabilities_everywhere": ["view"],
        "namespaces": [{"namespace": "alpha", "capabilities": ["edit", "propose", "view"]}],
    }


def test_only_a_superuser_may_change_a_superuser(
    admin_user: User, make_user: Callable[..., User], client_for: Callable[[User], APIClient]
) -> None:
    global_admin = client_for(make_user("gail", "admin", None))
    assert global_admin.get(f"/api/v1/users/{admin_user.pk}/").status_code == 200
    assert global_admin.patch(f"/api/v1/users/{admin_user.pk}/", {"password": "taken over at last"}).status_code == 403
    assert global_admin.delete(f"/api/v1/users/{admin_user.pk}/").status_code == 403
    admin_user.refresh_from_db()
    assert admin_user.check_password("correct horse battery staple")


def test_many_users_hold_one_role_in_one_namespace(alpha: Namespace) -> None:
    # On PostgreSQL the group constraint once counted two users' bindings (group null in both) as duplicates.
    RoleBinding.objects.create(user=User.objects.create_user("first"), role="editor", namespace=alpha)
    RoleBinding.objects.create(user=User.objects.create_user("second"), role="editor", namespace=alpha)
    assert RoleBinding.objects.filter(role="editor", namespace=alpha).count() == 2
