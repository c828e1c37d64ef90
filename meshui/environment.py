"""Typed readers for settings that come from the environment.

Every reader fails loudly with ``ImproperlyConfigured`` naming the variable and
what was wrong, so a typo in a deployment shows up at start-up rather than as a
puzzling runtime error. Secrets may also come from ``<NAME>_FILE`` (a mounted
Kubernetes Secret).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

Environ = Mapping[str, str]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_DATABASE_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql"}
# Django's own deploy check rejects keys shorter than this.
_MIN_SECRET_KEY_LENGTH = 50


def env_str(environ: Environ, name: str, default: str) -> str:
    value = environ.get(name, "").strip()
    return value or default


def env_bool(environ: Environ, name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of {sorted(_TRUE | _FALSE)}, got {raw!r}")


def env_int(environ: Environ, name: str, default: int, *, minimum: int | None = None) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(environ: Environ, name: str, default: float) -> float:
    """A fraction between 0 and 1 (a rate or a share)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ImproperlyConfigured(f"{name} must be between 0 and 1, got {value}")
    return value


def env_list(environ: Environ, name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = environ.get(name, "")
    if not raw.strip():
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(environ: Environ, name: str) -> str | None:
    """The value of NAME, or the contents of the file named by NAME_FILE.

    Returns ``None`` when neither is set. Setting both is an error: which one
    wins would otherwise be a guess.
    """
    direct = environ.get(name, "").strip()
    file_name = environ.get(f"{name}_FILE", "").strip()
    if direct and file_name:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None
        if not value:
            raise ImproperlyConfigured(f"{name}_FILE: {file_name} is empty")
        return value
    return direct or None


def data_dir(environ: Environ, default: Path) -> Path:
    raw = environ.get("MESHUI_DATA_DIR", "").strip()
    path = Path(raw).expanduser() if raw else default
    if not path.is_absolute():
        raise ImproperlyConfigured(f"MESHUI_DATA_DIR must be an absolute path, got {raw!r}")
    if path.exists() and not path.is_dir():
        raise ImproperlyConfigured(f"MESHUI_DATA_DIR {path} exists and is not a directory")
    return path


def database(environ: Environ, data_path: Path) -> dict[str, Any]:
    """Django's ``DATABASES['default']`` from ``DATABASE_URL``.

    Unset means an SQLite file in the data directory. Several processes (web,
    gRPC server, Celery workers) write to it at once, so it runs in WAL mode
    with a busy timeout and takes its write lock at the start of a transaction
    instead of failing half-way through with "database is locked".
    """
    url = environ.get("DATABASE_URL", "").strip()
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(data_path / "meshui.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not Django's default in-memory test database: tests run
            # servers and workers in threads, and shared-cache memory databases
            # lock whole tables instead of waiting like WAL does.
            "TEST": {"NAME": str(data_path / "test-meshui.sqlite3")},
        }
    scheme = urlsplit(url).scheme
    if scheme not in _DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme must be one of {sorted(_DATABASE_SCHEMES)}, got {scheme or 'none'!r}"
        )
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if config["ENGINE"] != "django.db.backends.sqlite3" and not config.get("NAME"):
        raise ImproperlyConfigured("DATABASE_URL must name a database, e.g. postgres://user@host:5432/meshui")
    return config


def redis_url(environ: Environ) -> str:
    """``REDIS_URL``; unset means the conventional local Redis.

    The launcher (``make demo``, ``make test``) starts an embedded Redis and
    sets ``REDIS_URL`` for every process it runs, so the default only matters
    to a process started by hand.
    """
    url = environ.get("REDIS_URL", "").strip()
    if not url:
        return "redis://127.0.0.1:6379/0"
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ImproperlyConfigured(f"REDIS_URL scheme must be one of {sorted(_REDIS_SCHEMES)}, got {parts.scheme!r}")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ImproperlyConfigured("REDIS_URL must name a host, e.g. redis://127.0.0.1:6379/0")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ImproperlyConfigured(f"REDIS_URL has an invalid port: {url!r}") from None
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ImproperlyConfigured(f"REDIS_URL database must be a number, got {db!r}")
    return url


def secret_key(environ: Environ, data_path: Path, *, production: bool) -> str:
    """``SECRET_KEY`` (or ``SECRET_KEY_FILE``).

    In production it must be given. Elsewhere a key is generated on first
    start and kept in the data directory, so sessions survive restarts and no
    key is ever committed.
    """
    key = env_secret(environ, "SECRET_KEY")
    if key:
        if production and len(key) < _MIN_SECRET_KEY_LENGTH:
            raise ImproperlyConfigured(f"SECRET_KEY must be at least {_MIN_SECRET_KEY_LENGTH} characters in production")
        return key
    if production:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when MESHUI_ENV=production")
    key_file = data_path / "secret_key"
    if key_file.exists():
        return key_file.read_text(encoding="utf-8").strip()
    data_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    # O_EXCL: two processes starting at once must not each write their own key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def trust_domain(environ: Environ) -> str:
    value = env_str(environ, "MESH_TRUST_DOMAIN", "cluster.local")
    if not _DNS_NAME.match(value):
        raise ImproperlyConfigured(
            f"MESH_TRUST_DOMAIN must be a lowercase DNS name such as cluster.local, got {value!r}"
        )
    return value


def origins(environ: Environ, name: str) -> list[str]:
    """A list of origins (scheme://host[:port]) as CSRF_TRUSTED_ORIGINS wants them."""
    values = env_list(environ, name, [])
    for value in values:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
            raise ImproperlyConfigured(f"{name} items must look like https://mesh.example.com, got {value!r}")
    return values


def environment_name(environ: Environ) -> str:
    value = env_str(environ, "MESHUI_ENV", "development").lower()
    if value not in {"development", "production"}:
        raise ImproperlyConfigured(f"MESHUI_ENV must be 'development' or 'production', got {value!r}")
    return value
