"""The dashboard's page routes, its static assets and the session login in front of them.

Every test points DASHBOARD_DIST_DIR at a fake build in a temporary folder, so none
depends on `make frontend` having run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client

INDEX_HTML = (
    '<!doctype html><html><head><script type="module" src="/static/dashboard/assets/index-AbC_12-z.js">'
    '</script></head><body><div id="root" data-marker="fake-dashboard-build"></div></body></html>'
)
PASSWORD = "correct horse battery staple"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def dist(tmp_path: Path, settings: Any) -> Path:
    """A fake Vite build, served as the real one would be."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX_HTML)
    (root / "assets" / "index-AbC_12-z.js").write_text("console.log('dashboard');\n")
    (root / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    settings.DASHBOARD_DIST_DIR = root
    settings.STATICFILES_DIRS = [("dashboard", root)]
    return root


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    return make_user("ada")


@pytest.fixture
def signed_in(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


# --- page routes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected_next"),
    [
        ("/", "/"),
        ("/graph?namespace=shop", "/graph%3Fnamespace%3Dshop"),
        (f"/traces/{TRACE_ID}", f"/traces/{TRACE_ID}"),
    ],
)
def test_anonymous_visitors_are_sent_to_the_login_page(
    client: Client, dist: Path, db: None, path: str, expected_next: str
) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={expected_next}"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/graph",
        "/graph?namespace=shop",
        f"/traces/{TRACE_ID}",
        f"/traces/{TRACE_ID}?span=00f067aa0ba902b7",
        "/traces",
        "/traces/compare?a=1&b=2",
        "/services/3",
        "/agents",
        "/agents/some/deeper/route",
        "/policies?ns=shop",
        "/changes?awaiting=me",
        "/changes/12",
        "/changes/new",
        "/versions/3",
        "/identity",
    ],
)
def test_signed_in_users_get_the_app_with_a_csrf_cookie(signed_in: Client, dist: Path, path: str) -> None:
    response = signed_in.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response.content.decode() == INDEX_HTML
    assert response.cookies["csrftoken"].value


@pytest.mark.parametrize("path", ["/nope", "/graphs", "/servicesx/3", "/static/dashboard/index.html.missing"])
def test_other_paths_are_not_found(signed_in: Client, dist: Path, path: str) -> None:
    assert signed_in.get(path).status_code == 404


def test_the_app_is_read_again_after_a_rebuild(signed_in: Client, dist: Path) -> None:
    assert b"fake-dashboard-build" in signed_in.get("/").content
    (dist / "index.html").write_text("<!doctype html><title>rebuilt, and longer than before</title>")
    assert b"rebuilt" in signed_in.get("/graph").content


def test_page_routes_only_answer_reads(signed_in: Client, dist: Path) -> None:
    assert signed_in.post("/graph").status_code == 405


def test_a_missing_build_is_a_clear_503(signed_in: Client, settings: Any, tmp_path: Path) -> None:
    settings.DASHBOARD_DIST_DIR = tmp_path / "not-built"
    response = signed_in.get("/traces")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Cache-Control"] == "no-cache"
    page = response.content.decode()
    assert "make frontend" in page
    assert "Traceback" not in page


# --- static assets -----------------------------------------------------------------


def test_built_assets_are_found_under_the_dashboard_prefix(dist: Path) -> None:
    found = finders.find("dashboard/assets/index-AbC_12-z.js")
    assert found is not None
    assert Path(str(found)) == dist / "assets" / "index-AbC_12-z.js"


def test_hashed_assets_are_served_and_cached_for_good(dist: Path, db: None) -> None:
    response = Client().get("/static/dashboard/assets/index-AbC_12-z.js")
    try:
        assert response.status_code == 200
        assert response.getvalue() == b"console.log('dashboard');\n"
    finally:
        response.close()
    assert "immutable" in response["Cache-Control"]
    assert response["Content-Type"].startswith("text/javascript")


def test_unhashed_build_files_are_not_cached_for_good(dist: Path, db: None) -> None:
    response = Client().get("/static/dashboard/favicon.svg")
    response.close()
    assert response.status_code == 200
    assert "immutable" not in response.get("Cache-Control", "")


# --- login and logout --------------------------------------------------------------


def test_the_login_page_renders_a_form_with_a_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.get("/login/?next=/graph")
    assert response.status_code == 200
    page = response.content.decode()
    assert "meshui" in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'name="username"' in page
    assert "autofocus" in page
    assert 'type="password"' in page
    assert 'name="next" value="/graph"' in page
    assert response.cookies["csrftoken"].value


def test_logging_in_without_the_csrf_token_is_refused(user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_logging_in_with_the_csrf_token_works(user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    token = client.get("/login/").cookies["csrftoken"].value
    response = client.post("/login/", {"username": "ada", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_bad_credentials_show_an_error_and_start_no_session(client: Client, user: User) -> None:
    response = client.post("/login/", {"username": "ada", "password": "wrong", "next": "/graph"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'role="alert"' in page
    assert "Please enter a correct username and password" in page
    assert 'value="ada"' in page  # the username is kept, the password is not
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        (f"/traces/{TRACE_ID}?span=1", f"/traces/{TRACE_ID}?span=1"),
        ("/graph?namespace=shop", "/graph?namespace=shop"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("http://testserver/agents", "http://testserver/agents"),
        ("", "/"),
    ],
)
def test_logging_in_returns_only_to_this_site(client: Client, user: User, next_url: str, expected: str) -> None:
    response = client.post("/login/", {"username": "ada", "password": PASSWORD, "next": next_url})
    assert response.status_code == 302
    assert response["Location"] == expected
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_signed_in_user_skips_the_login_page(signed_in: Client) -> None:
    response = signed_in.get("/login/?next=/agents")
    assert response.status_code == 302
    assert response["Location"] == "/agents"


def test_logout_refuses_get(signed_in: Client) -> None:
    assert signed_in.get("/logout/").status_code == 405
    assert "_auth_user_id" in signed_in.session


def test_logout_by_post_ends_the_session(signed_in: Client, dist: Path) -> None:
    response = signed_in.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert "_auth_user_id" not in signed_in.session
    assert signed_in.get("/").status_code == 302


def test_the_rest_framework_login_still_works(client: Client, user: User) -> None:
    assert client.get("/api/auth/login/").status_code == 200
    response = client.post("/api/auth/login/", {"username": "ada", "password": PASSWORD, "next": "/api/v1/me/"})
    assert response.status_code == 302
    assert response["Location"] == "/api/v1/me/"
