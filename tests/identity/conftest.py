"""Each test gets its own CA directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def ca_dir(settings: Any, tmp_path: Path) -> Path:
    settings.MESH_CA_DIR = str(tmp_path / "ca")
    settings.MESH_CA_CERT_FILE = settings.MESH_CA_KEY_FILE = settings.MESH_CA_BUNDLE_FILE = ""
    settings.MESH_CA_INTERMEDIATE = False
    return tmp_path / "ca"
