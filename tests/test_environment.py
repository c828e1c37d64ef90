"""Each setting read from the environment, and bad values refused with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3.base import DatabaseWrapper

from meshui import environment as env

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("off", False), ("0", False)]
)
def test_it_parses_booleans(raw: str, expected: bool) -> None:
    assert env.env_bool({"X": raw}, "X", default=not expected) is expected


def test_it_uses_defaults_for_unset_or_blank_values() -> None:
    assert env.env_bool({}, "X", default=True) is True
    assert env.env_int({"X": "  "}, "X", 7) == 7
    assert env.env_list({}, "X", ["a"]) == ["a"]
    assert env.env_str({"X": ""}, "X", "d") == "d"


def test_it_refuses_a_non_boolean() -> None:
    with pytest.raises(ImproperlyConfigured, match="MESHUI_DEBUG must be one of"):
        env.env_bool({"MESHUI_DEBUG": "maybe"}, "MESHUI_DEBUG", default=False)


def test_it_parses_and_bounds_integers() -> None:
    assert env.env_int({"N": "42"}, "N", 1) == 42
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        env.env_int({"N": "4x"}, "N", 1)
    with pytest.raises(ImproperlyConfigured, match="N must be at least 1"):
        env.env_int({"N": "0"}, "N", 5, minimum=1)


def test_it_splits_lists_and_drops_blanks() -> None:
    assert env.env_list({"ALLOWED_HOSTS": "a.example, b.example,,"}, "ALLOWED_HOSTS", []) == ["a.example", "b.example"]


def test_it_reads_secrets_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert env.env_secret({"SECRET_KEY_FILE": str(secret)}, "SECRET_KEY") == "s3cret"
    assert env.env_secret({"SECRET_KEY": "direct"}, "SECRET_KEY") == "direct"
    assert env.env_secret({}, "SECRET_KEY") is None


def test_it_refuses_secret_files_that_are_missing_empty_or_doubled(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE: cannot read"):
        env.env_secret({"SECRET_KEY_FILE": str(tmp_path / "missing")}, "SECRET_KEY")
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ImproperlyConfigured, match="is empty"):
        env.env_secret({"SECRET_KEY_FILE": str(empty)}, "SECRET_KEY")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env.env_secret({"SECRET_KEY": "a", "SECRET_KEY_FILE": str(empty)}, "SECRET_KEY")


def test_it_defaults_to_sqlite_in_wal_mode_in_the_data_dir(tmp_path: Path, django_db_blocker: Any) -> None:
    config = env.database({}, tmp_path)
    assert config["NAME"] == str(tmp_path / "meshui.sqlite3")
    # Open a real connection with exactly these settings and ask SQLite what it did.
    wrapper = DatabaseWrapper(
        {
            **config,
            "TIME_ZONE": None,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "AUTOCOMMIT": True,
            "ATOMIC_REQUESTS": False,
            "TEST": {},
        },
        alias="probe",
    )
    try:
        with django_db_blocker.unblock(), wrapper.cursor() as cursor:
            assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
            assert cursor.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        wrapper.close()


def test_it_parses_a_postgres_url(tmp_path: Path) -> None:
    config = env.database({"DATABASE_URL": "postgres://mesh:pw@db.internal:6543/meshui"}, tmp_path)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == ("db.internal", 6543, "meshui", "mesh")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/db", "DATABASE_URL scheme must be one of"),
        ("postgres://host:5432/", "must name a database"),
        ("nonsense", "DATABASE_URL scheme"),
    ],
)
def test_it_refuses_bad_database_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        env.database({"DATABASE_URL": url}, tmp_path)


def test_it_parses_redis_urls() -> None:
    assert env.redis_url({}) == "redis://127.0.0.1:6379/0"
    assert env.redis_url({"REDIS_URL": "rediss://cache:6380/2"}) == "rediss://cache:6380/2"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379", "scheme must be one of"),
        ("redis://:6379/0", "must name a host"),
        ("redis://cache:port/0", "invalid port"),
        ("redis://cache:6379/x", "database must be a number"),
    ],
)
def test_it_refuses_bad_redis_urls(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        env.redis_url({"REDIS_URL": url})


def test_it_generates_a_secret_key_once_and_keeps_it(tmp_path: Path) -> None:
    first = env.secret_key({}, tmp_path, production=False)
    assert len(first) >= 50
    assert env.secret_key({}, tmp_path, production=False) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_it_requires_a_strong_secret_key_in_production(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="required when MESHUI_ENV=production"):
        env.secret_key({}, tmp_path, production=True)
    with pytest.raises(ImproperlyConfigured, match="at least 50 characters"):
        env.secret_key({"SECRET_KEY": "short"}, tmp_path, production=True)
    assert not (tmp_path / "secret_key").exists()


def test_it_validates_the_trust_domain() -> None:
    assert env.trust_domain({}) == "cluster.local"
    assert env.trust_domain({"MESH_TRUST_DOMAIN": "mesh.example.com"}) == "mesh.example.com"
    with pytest.raises(ImproperlyConfigured, match="MESH_TRUST_DOMAIN must be a lowercase DNS name"):
        env.trust_domain({"MESH_TRUST_DOMAIN": "spiffe://Example.com"})


def test_it_validates_csrf_trusted_origins() -> None:
    assert env.origins({"CSRF_TRUSTED_ORIGINS": "https://mesh.example.com"}, "CSRF_TRUSTED_ORIGINS") == [
        "https://mesh.example.com"
    ]
    with pytest.raises(ImproperlyConfigured, match="CSRF_TRUSTED_ORIGINS items must look like"):
        env.origins({"CSRF_TRUSTED_ORIGINS": "mesh.example.com"}, "CSRF_TRUSTED_ORIGINS")


def test_it_refuses_a_relative_data_dir_and_an_unknown_environment(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="MESHUI_DATA_DIR must be an absolute path"):
        env.data_dir({"MESHUI_DATA_DIR": "relative/dir"}, tmp_path)
    with pytest.raises(ImproperlyConfigured, match="MESHUI_ENV must be"):
        env.environment_name({"MESHUI_ENV": "staging"})


def _settings_in_subprocess(extra_env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MESHUI_", "SECRET_KEY", "ALLOWED_HOSTS"))}
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "meshui.settings", **extra_env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_settings_module_reads_the_environment(tmp_path: Path) -> None:
    result = _settings_in_subprocess(
        {
            "MESHUI_DATA_DIR": str(tmp_path),
            "ALLOWED_HOSTS": "mesh.example.com",
            "MESH_TRUST_DOMAIN": "corp.example",
            "REDIS_URL": "redis://cache.internal:6390/3",
        },
        "settings.ALLOWED_HOSTS, settings.MESH_TRUST_DOMAIN, settings.CELERY_BROKER_URL, settings.DEBUG",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['mesh.example.com'] corp.example redis://cache.internal:6390/3 True"


def test_the_settings_module_fails_loudly_on_a_bad_value(tmp_path: Path) -> None:
    result = _settings_in_subprocess({"MESHUI_DATA_DIR": str(tmp_path), "MESHUI_DEBUG": "perhaps"}, "settings.DEBUG")
    assert result.returncode != 0
    assert "ImproperlyConfigured: MESHUI_DEBUG must be one of" in result.stderr
