"""Compiles the request path's modules to C extensions with mypyc (``make native``).

The modules stay ordinary, strictly typed Python; mypyc turns each into an
extension module built next to its source, which Python imports in its place.
Where no C compiler is found, the build is skipped and the sources run
interpreted: the same code, slower (ADR 010).

An extension shadows its ``.py`` until rebuilt, so the build records the
SHA-256 of every source it compiled in ``MANIFEST``, ``make`` rebuilds when
a source changed, and a test fails when an extension is stale.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
MANIFEST = PACKAGE / "native-manifest.json"
# C sources and object files: kept out of the source tree.
BUILD_DIR = ROOT / ".venv" / "native-build"
# Every module a proxied request runs through; mypyc calls between them natively.
NATIVE_MODULES = (
    "proxyagent.balancer",
    "proxyagent.config_store",
    "proxyagent.hash_ring",
    "proxyagent.http.downstream",
    "proxyagent.http.exchange",
    "proxyagent.http.headers",
    "proxyagent.http.heads",
    "proxyagent.http.native_relay",
    "proxyagent.http.policy_path",
    "proxyagent.http.proxy",
    "proxyagent.http.upstream",
    "proxyagent.inbound_policy",
    "proxyagent.mesh_errors",
    "proxyagent.metrics",
    "proxyagent.otlp_wire",
    "proxyagent.resilience.circuit_breaker",
    "proxyagent.resilience.destination",
    "proxyagent.resilience.outlier",
    "proxyagent.resilience.retry_budget",
    "proxyagent.routers",
    "proxyagent.routing",
    "proxyagent.telemetry",
    "proxyagent.tracing",
)
# Written in C, not compiled from Python: module -> source (ADR 013, ADR 019).
C_MODULES = {
    "proxyagent.http._relay": "proxyagent/http/_relay.c",
    "proxyagent.tls._transport": "proxyagent/tls/_transport.c",
}
# The libraries a C module links with; it is built only where their headers are found (else the agent uses
# asyncio's TLS for mutual TLS records).
C_LIBRARIES = {"proxyagent.tls._transport": (("ssl", "crypto"), "openssl/ssl.h")}
# The one shared library holding all compiled modules (mypyc's "group").
GROUP = "proxyagent.native"


def _header_found(header: str) -> bool:
    """Whether ``header`` is in the C compiler's usual include directories (or those named by CPATH).

    Only directories whose libraries the default linker path also finds: a header found elsewhere would make the
    link fail, and with it the whole build (everything would then run interpreted)."""
    directories = [
        *os.environ.get("CPATH", "").split(os.pathsep),
        *os.environ.get("C_INCLUDE_PATH", "").split(os.pathsep),
        sysconfig.get_config_var("INCLUDEDIR") or "",
        "/usr/local/include",
        "/usr/include",
    ]
    return any(directory and (Path(directory) / header).is_file() for directory in directories)


def c_modules() -> tuple[str, ...]:
    """The C modules this machine can build: those whose libraries' headers are there."""
    return tuple(module for module in C_MODULES if module not in C_LIBRARIES or _header_found(C_LIBRARIES[module][1]))


def all_modules() -> tuple[str, ...]:
    return (*NATIVE_MODULES, *c_modules())


def source_path(module: str) -> Path:
    if module in C_MODULES:
        return ROOT / C_MODULES[module]
    return ROOT / (module.replace(".", "/") + ".py")


def source_digests() -> dict[str, str]:
    return {module: hashlib.sha256(source_path(module).read_bytes()).hexdigest() for module in all_modules()}


def extensions(module: str) -> list[Path]:
    """The compiled extension files for ``module`` (``name.cpython-311-….so``), if any."""
    path = source_path(module)
    return sorted(path.parent.glob(f"{path.stem}.*.so"))


def _group_extensions() -> list[Path]:
    path = source_path(GROUP)
    return sorted(path.parent.glob(f"{path.stem}__mypyc.*.so"))


def stale_modules() -> list[str]:
    """Modules whose compiled extension was not built from their current source (none when the
    sources run interpreted)."""
    try:
        built: dict[str, str] = json.loads(MANIFEST.read_text())["modules"]
    except (OSError, ValueError, KeyError):
        built = {}
    current = source_digests()
    return [module for module in all_modules() if extensions(module) and built.get(module) != current[module]]


def compiled_modules() -> list[str]:
    return [module for module in all_modules() if extensions(module)]


def request_path_kind() -> str:
    """How this process runs the request path: ``compiled`` when every native module it imported is
    an extension, else ``interpreted``."""
    loaded = [sys.modules[module] for module in NATIVE_MODULES if module in sys.modules]
    compiled = bool(loaded) and all(str(getattr(module, "__file__", "")).endswith(".so") for module in loaded)
    return "compiled" if compiled else "interpreted"


def remove_extensions() -> None:
    for module in all_modules():
        for path in extensions(module):
            path.unlink()
    for path in _group_extensions():
        path.unlink()
    MANIFEST.unlink(missing_ok=True)


def build() -> None:
    """Compiles ``NATIVE_MODULES`` in place; raises ``SystemExit`` or ``Exception`` when it cannot."""
    # Imported here: mypy and setuptools are build tools, not needed to run the agent.
    from mypyc.build import mypycify
    from setuptools import Extension, setup  # type: ignore[import-untyped]  # no stubs worth a dev dependency

    digests = source_digests()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    os.chdir(ROOT)
    try:
        setup(
            name="proxyagent-native",
            packages=[],
            py_modules=[],
            ext_modules=mypycify(
                [
                    # Not pyproject's [tool.mypy]: its Django plugins are dev tools. `make lint` type-checks
                    # these modules strictly; here types only steer code generation.
                    "--config-file=",
                    "--python-version=3.11",
                    "--ignore-missing-imports",
                    f"--cache-dir={BUILD_DIR / 'mypy-cache'}",
                    *(str(source_path(module).relative_to(ROOT)) for module in NATIVE_MODULES),
                ],
                opt_level="3",
                target_dir=str(BUILD_DIR / "c"),
                group_name=GROUP,
            )
            + [
                Extension(
                    module,
                    [C_MODULES[module]],
                    libraries=list(C_LIBRARIES[module][0]) if module in C_LIBRARIES else [],
                    extra_compile_args=["-O2", "-Wall"],
                )
                for module in c_modules()
            ],
            script_args=["--quiet", "build_ext", "--inplace", "--build-temp", str(BUILD_DIR / "obj")],
        )
    finally:
        os.chdir(previous)
    MANIFEST.write_text(json.dumps({"modules": digests}, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the extensions are current")
    parser.add_argument("--remove", action="store_true", help="delete the extensions: run the sources interpreted")
    args = parser.parse_args(argv)
    if args.remove:
        remove_extensions()
        return 0
    stale = stale_modules()
    current = not stale and compiled_modules() == list(all_modules())
    if args.check:
        print("compiled and current" if current else f"not compiled or stale: {stale or 'none built'}")
        return 0 if current else 1
    if current:
        return 0
    # A failed build must not leave older extensions shadowing newer sources.
    remove_extensions()
    try:
        build()
    except (Exception, SystemExit) as exc:  # any build failure means: run interpreted
        remove_extensions()
        print(f"proxyagent: not compiled ({exc}); the request path runs interpreted", file=sys.stderr)
        return 0
    print(f"proxyagent: compiled {len(NATIVE_MODULES)} modules with mypyc and the native relay", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
