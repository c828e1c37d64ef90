"""A namespace with a two-version service, and one user per role in it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from meshui.catalog.models import Namespace, Service, Workload

ClientFor = Callable[[User], APIClient]


@pytest.fixture
def reviews(alpha: Namespace) -> Service:
    service = Service.objects.create(namespace=alpha, name="reviews")
    Workload.objects.create(service=service, name="reviews-v1", labels={"version": "v1"})
    Workload.objects.create(service=service, name="reviews-v2", labels={"version": "v2"})
    return service


@pytest.fixture
def cast(alpha: Namespace, beta: Namespace, make_user: Callable[..., User], client_for: ClientFor) -> dict[str, Any]:
    """API clients by role: editor, a second editor, two approvers and an admin of alpha; beta's approver;
    alpha's viewer."""
    users = {
        "editor": make_user("erin", "editor", alpha),
        "editor2": make_user("eddie", "editor", alpha),
        "approver": make_user("alice", "approver", alpha),
        "approver2": make_user("arthur", "approver", alpha),
        "admin": make_user("ada", "admin", alpha),
        "beta_approver": make_user("bob", "approver", beta),
        "viewer": make_user("vera", "viewer", alpha),
    }
    return {role: client_for(user) for role, user in users.items()}
