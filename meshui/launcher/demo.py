"""``make demo``: the whole mesh on one machine, with one command.

Migrates the database, makes sure an admin exists, then runs the web server
(uvicorn, ASGI), a Celery worker and Celery beat, the mesh control gRPC
server, and the sample application (six workloads of five services, each
with its own sidecar, plus a load generator), with an embedded Redis when
``REDIS_URL`` is unset. Ctrl-C (or SIGTERM) stops them all, newest first.

The mesh runs zero trust unless ``--plaintext``: MeshControl serves TLS, every
sidecar joins with a join token and talks mutual TLS, and the sample namespace
gets a reviewed lockdown (deny by default, allow its own callers, STRICT), so
the batch job of namespace ``jobs`` that calls ``reviews`` is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from meshui.launcher import sample_mesh
from meshui.launcher.embedded_redis import EmbeddedRedis
from meshui.launcher.processes import ProcessGroup

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60.0


class _StopRequestedError(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequestedError(signal.Signals(signum).name)


def _poll(condition: Callable[[], bool], group: ProcessGroup, timeout: float) -> bool:
    """Whether ``condition`` came to hold within ``timeout``; a child exiting meanwhile is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = group.first_exited()
        if exited is not None:
            raise RuntimeError(f"{exited.name} exited with status {exited.process.returncode} while starting")
        if condition():
            return True
        time.sleep(0.2)  # polling interval while the processes start
    return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_http_ok(url: str, group: ProcessGroup, timeout: float) -> None:
    if not _poll(lambda: _http_ok(url), group, timeout):
        raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _config_version(admin_http_port: int) -> int | None:
    """The config version a sidecar applied (its ``mesh_config_version`` gauge), None while it cannot say."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_http_port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    for line in text.splitlines():
        if line.startswith("mesh_config_version "):
            return int(float(line.split()[1]))
    return None


def _wait_converged(agents: list[sample_mesh.AgentPorts], group: ProcessGroup, timeout: float) -> None:
    """Until every sidecar holds the same config version: the newest, since the last to register got it with
    its registration. Earlier sidecars learn of later ones through a push; load started before that would
    meet no_route for services that are merely still joining."""

    def converged() -> bool:
        versions = {_config_version(ports.admin_http) for ports in agents}
        return len(versions) == 1 and None not in versions

    if not _poll(converged, group, timeout):
        print("meshui: the sidecars' config versions did not converge in time; starting the load anyway", flush=True)


def _start_sample_mesh(
    group: ProcessGroup, control_plane: str, data_dir: Path, rate: float, identity_dir: Path | None
) -> None:
    agents = sample_mesh.plan()
    sample_mesh.write_manifest(data_dir / "demo-mesh.json", agents)
    tokens: dict[str, str] = {}
    bundle = None
    if identity_dir is not None:
        tokens = json.loads((identity_dir / "join-tokens.json").read_text(encoding="utf-8"))
        bundle = identity_dir / "trust-bundle.pem"
    for ports in agents:
        token = tokens.get(sample_mesh.identity_of(ports))
        group.start(
            f"agent {ports.service}-{ports.version}",
            sample_mesh.agent_argv(ports, control_plane, bundle),
            {"PROXYAGENT_JOIN_TOKEN": token} if token else None,
        )
    for workload, ports in zip(sample_mesh.TOPOLOGY, agents, strict=False):
        group.start(f"app {ports.service}-{ports.version}", sample_mesh.app_argv(workload, ports))
    for ports in agents:
        _wait_http_ok(f"http://127.0.0.1:{ports.admin_http}/readyz", group, READY_TIMEOUT_SECONDS)
    _wait_converged(agents, group, READY_TIMEOUT_SECONDS)
    loadgen, outsider = agents[-2], agents[-1]
    group.start("load generator", sample_mesh.load_generator_argv(loadgen, rate))
    group.start(
        "batch job",
        sample_mesh.load_generator_argv(outsider, sample_mesh.OUTSIDER_RATE, sample_mesh.OUTSIDER.calls[0]),
    )
    print(f"meshui: sample mesh up, {len(agents)} sidecars; ports in {data_dir / 'demo-mesh.json'}", flush=True)
    for ports in agents:
        print(f"  {ports.service}-{ports.version}: metrics http://127.0.0.1:{ports.admin_http}/metrics", flush=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m meshui.launcher demo", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("MESHUI_HOST", "127.0.0.1"), help="web server address")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MESHUI_PORT", "8000")), help="web server port")
    parser.add_argument("--no-worker", action="store_true", help="do not start the Celery worker and beat")
    parser.add_argument(
        "--grpc-port", type=int, default=int(os.environ.get("MESH_GRPC_PORT", "15010")), help="mesh control gRPC port"
    )
    parser.add_argument("--no-sample-mesh", action="store_true", help="run only the control plane")
    parser.add_argument("--rate", type=float, default=10.0, help="the load generator's requests per second")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="no TLS anywhere and no lockdown policy (the mesh as it was before zero trust)",
    )
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = _parse(argv)
    python = sys.executable
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "meshui.settings", "PYTHONUNBUFFERED": "1"}
    data_dir = Path(env.get("MESHUI_DATA_DIR") or REPO_ROOT / ".data")
    if not args.plaintext:
        env.setdefault("MESH_GRPC_TLS", "true")
    redis: EmbeddedRedis | None = None
    group = ProcessGroup(env)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not env.get("REDIS_URL", "").strip():
            redis = EmbeddedRedis(data_dir / "redis")
            env["REDIS_URL"] = redis.start()
            print(f"meshui: embedded Redis at {env['REDIS_URL']}", flush=True)
        manage = [python, str(REPO_ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, cwd=REPO_ROOT)
        subprocess.run([*manage, "ensure_admin"], env=env, check=True, cwd=REPO_ROOT)
        subprocess.run(
            [*manage, "demo_users", "--namespace", sample_mesh.NAMESPACE], env=env, check=True, cwd=REPO_ROOT
        )
        identity_dir = None
        if not args.plaintext and not args.no_sample_mesh:
            subprocess.run(
                [*manage, "demo_policy", "--namespace", sample_mesh.NAMESPACE], env=env, check=True, cwd=REPO_ROOT
            )
            identity_dir = data_dir / "identity"
            workloads = sorted({sample_mesh.identity_of(workload) for workload in sample_mesh.WORKLOADS})
            subprocess.run(
                [*manage, "demo_identity", "--out", str(identity_dir), *workloads], env=env, check=True, cwd=REPO_ROOT
            )
        group.start(
            "web",
            [
                python,
                "-m",
                "uvicorn",
                "meshui.asgi:application",
                "--host",
                args.host,
                "--port",
                str(args.port),
                "--lifespan",
                "off",
                "--app-dir",
                str(REPO_ROOT),
            ],
        )
        if not args.no_worker:
            celery = [python, "-m", "celery", "--workdir", str(REPO_ROOT), "-A", "meshui"]
            group.start("worker", [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"])
            group.start(
                "beat",
                [*celery, "beat", "--loglevel", "INFO", "--schedule", str(data_dir / "celerybeat-schedule")],
            )
        control_plane = f"127.0.0.1:{args.grpc_port}"
        group.start("meshgrpc", [*manage, "meshgrpc", "--bind", control_plane])
        base = f"http://{args.host}:{args.port}"
        _wait_http_ok(f"{base}/healthz", group, READY_TIMEOUT_SECONDS)
        if not args.no_sample_mesh:
            _start_sample_mesh(group, control_plane, data_dir, args.rate, identity_dir)
        print(
            f"\nmeshui is running at {base}/  (dashboard; API docs {base}/api/docs/, admin {base}/admin/)", flush=True
        )
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            exited = group.first_exited()
            if exited is not None:
                print(f"meshui: {exited.name} exited with status {exited.process.returncode}; stopping", flush=True)
                return 1
            time.sleep(0.5)  # supervision interval
    except _StopRequestedError as stop:
        print(f"\nmeshui: {stop}, stopping…", flush=True)
        return 0
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"meshui: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # Ignore further Ctrl-C while shutting down so we do not leave orphans behind.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        group.stop()
        if redis is not None:
            redis.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
