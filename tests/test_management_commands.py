"""ensure_admin, demo_users and issue_token, the commands the demo and automation set-up rely on."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from meshui.accounts.models import RoleBinding
from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Namespace
from meshui.policy.models import ConfigVersion, Policy

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_ensure_admin_generates_a_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHUI_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MESHUI_ADMIN_PASSWORD_FILE", raising=False)
    output = _run("ensure_admin")
    password = output.split("generated admin password (shown once): ")[1].strip()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert "already exists" in _run("ensure_admin")
    admin.refresh_from_db()
    assert admin.check_password(password), "a second run must not change the password"


def test_ensure_admin_takes_the_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHUI_ADMIN_PASSWORD", "from the environment")
    output = _run("ensure_admin")
    assert "generated" not in output
    assert User.objects.get(username="admin").check_password("from the environment")


def test_ensure_admin_will_not_promote_an_ordinary_user(monkeypatch: pytest.MonkeyPatch) -> None:
    User.objects.create_user(username="admin")
    monkeypatch.setenv("MESHUI_ADMIN_PASSWORD", "whatever it is")
    with pytest.raises(CommandError, match="is not an administrator"):
        _run("ensure_admin")
    assert not User.objects.get(username="admin").is_superuser


def test_issue_token_prints_a_working_token(admin_user: Any) -> None:
    plain = _run("issue_token", "root", "--name", "setup").strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert client.get("/api/v1/me/").json()["username"] == "root"
    assert AuditEvent.objects.filter(action=AuditAction.CREATE, object_type="accounts.apitoken").exists()


def test_issue_token_refuses_unknown_users() -> None:
    with pytest.raises(CommandError, match="no active user 'ghost'"):
        _run("issue_token", "ghost")


def test_demo_users_hold_the_editor_and_approver_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHUI_DEMO_PASSWORD", "a demo password of some length")
    out = StringIO()
    call_command("demo_users", "--namespace", "shop", stdout=out)
    call_command("demo_users", "--namespace", "shop", stdout=out)  # idempotent
    shop = Namespace.objects.get(name="shop")
    roles = set(RoleBinding.objects.filter(namespace=shop).values_list("user__username", "role"))
    assert roles == {("editor", "editor"), ("approver", "approver")}
    assert User.objects.get(username="approver").check_password("a demo password of some length")


def test_demo_policy_locks_the_namespace_down_through_a_reviewed_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHUI_DEMO_PASSWORD", "a demo password of some length")
    call_command("demo_users", "--namespace", "shop", stdout=StringIO())
    assert "applied config version 1" in _run("demo_policy", "--namespace", "shop")
    version = ConfigVersion.objects.get()
    assert (version.author_name, version.approver_names, version.applied_by_name) == ("editor", ["approver"], "editor")
    kinds = dict(Policy.objects.filter(namespace__name="shop").values_list("kind", "spec"))
    assert kinds["authorization_default"] == {"default": "deny-all"}
    assert kinds["peer_authentication"] == {"mode": "STRICT"}
    assert "left as it is" in _run("demo_policy", "--namespace", "shop")
    assert ConfigVersion.objects.count() == 1
    actors = set(AuditEvent.objects.filter(object_type="policy.changerequest").values_list("actor_name", "action"))
    assert ("approver", "approve") in actors
    assert ("editor", "apply") in actors
