"""Shared cast for the test suite: namespaces alpha and beta, and users holding each role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from rest_framework.test import APIClient

from meshui.accounts.models import ApiToken, RoleBinding
from meshui.catalog.models import Namespace, Service, Workload

ClientFor = Callable[[User], APIClient]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    # Servers the tests run in threads (uvicorn) open their own connections; with
    # persistent connections those would outlive the test and block dropping the
    # test database.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def _close_connections_of_the_sync_thread() -> Iterator[None]:
    yield
    # Outside a request, sync_to_async calls (the tests' own, and servers run in the test's loop)
    # share asgiref's one executor thread; a connection left open there would outlive the test
    # and block dropping the test database.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The production hasher is slow on purpose; the tests create hundreds of users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def ca_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test's own CA directory (created only when something needs the CA), never the data dir's."""
    settings.MESH_CA_DIR = str(tmp_path / "ca")
    settings.MESH_CA_CERT_FILE = settings.MESH_CA_KEY_FILE = settings.MESH_CA_BUNDLE_FILE = ""
    settings.MESH_CA_INTERMEDIATE = False
    return tmp_path / "ca"


@pytest.fixture
def alpha(db: None) -> Namespace:
    return Namespace.objects.create(name="alpha")


@pytest.fixture
def beta(db: None) -> Namespace:
    return Namespace.objects.create(name="beta")


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str, role: str | None = None, namespace: Namespace | None = None) -> User:
        user = User.objects.create_user(username=username, password="correct horse battery staple")
        if role is not None:
            RoleBinding.objects.create(user=user, role=role, namespace=namespace)
        return user

    return make


@pytest.fixture
def admin_user(db: None) -> User:
    return User.objects.create_superuser(username="root", password="correct horse battery staple")


@pytest.fixture
def client_for() -> ClientFor:
    """An API client that authenticates with a real personal token, as automation would."""

    def build(user: User) -> APIClient:
        _, plain = ApiToken.issue(user, "test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
        return client

    return build


@pytest.fixture
def admin_client(admin_user: User, client_for: ClientFor) -> APIClient:
    return client_for(admin_user)


@pytest.fixture
def web_service(alpha: Namespace) -> Service:
    return Service.objects.create(
        namespace=alpha, name="web", ports=[{"name": "http", "port": 8080, "protocol": "http"}]
    )


@pytest.fixture
def web_v1(web_service: Service) -> Workload:
    return Workload.objects.create(service=web_service, name="web-v1", labels={"version": "v1"})
