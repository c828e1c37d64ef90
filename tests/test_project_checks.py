"""Project-wide gates: the production deploy check is clean, migrations and the API schema are current."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

REPO = Path(__file__).resolve().parent.parent


def test_deploy_check_in_production_mode_has_no_warnings(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MESHUI_")},
        "DJANGO_SETTINGS_MODULE": "meshui.settings",
        "MESHUI_ENV": "production",
        "MESHUI_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "k" * 20 + "-production-secret-key-for-the-deploy-check-" + "z9" * 10,
        "ALLOWED_HOSTS": "mesh.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://mesh.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MESHUI_", "SECRET_KEY"))},
        "DJANGO_SETTINGS_MODULE": "meshui.settings",
        "MESHUI_ENV": "production",
        "MESHUI_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when MESHUI_ENV=production" in result.stderr


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_openapi_schema_builds_without_warnings(tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema))
    text = schema.read_text()
    for path in ("/api/v1/services/", "/api/v1/role-bindings/", "/api/v1/audit-events/", "/api/v1/tokens/"):
        assert f"  {path}:" in text
    assert "scheme: bearer" in text
