"""Regenerate the Python code for the ``.proto`` contract (``make proto``).

``--check`` generates into a temporary folder and compares, for the test that
fails when someone edits a ``.proto`` and forgets to regenerate.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTOCOL_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTOCOL_DIR.parent.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    return sorted(PROTOCOL_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    include = str(Path(protoc.__file__).parent / "_proto")
    sources = [str(path.relative_to(REPO_ROOT)) for path in proto_files()]
    # mypy-protobuf's plugins are installed next to this interpreter, which need not be on PATH.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{REPO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(root: Path) -> list[Path]:
    return sorted(
        path.relative_to(root)
        for path in (root / PROTOCOL_DIR.relative_to(REPO_ROOT)).rglob("*")
        if path.name.endswith(GENERATED_SUFFIXES)
    )


def stale_files() -> list[str]:
    """Generated files that differ from what the ``.proto`` files produce now (or are missing or extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh = generated_files(fresh_root)
        current = generated_files(REPO_ROOT)
        stale = {str(p) for p in set(fresh) ^ set(current)}
        stale |= {
            str(p) for p in set(fresh) & set(current) if not filecmp.cmp(fresh_root / p, REPO_ROOT / p, shallow=False)
        }
        return sorted(stale)


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0
    generate(REPO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
