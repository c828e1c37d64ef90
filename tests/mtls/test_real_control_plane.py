"""The real control plane issues real agent processes their certificates, and they call each other over mTLS.

Processes as an operator runs them: ``manage.py meshgrpc`` with ``MESH_GRPC_TLS=true`` on a fresh data
directory, join tokens from ``manage.py jointoken create``, the bundle from ``manage.py trustbundle``, and
two ``python -m proxyagent run`` sidecars given the token through ``PROXYAGENT_JOIN_TOKEN`` (never on the
command line) around a sample app.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from meshui.launcher.sample_mesh import free_port
from tests.proxyagent.sample_app import running_app

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0

pytestmark = pytest.mark.slow


def _until(condition: Callable[[], Any], what: str, processes: list[subprocess.Popen[str]]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args!r} exited with {process.returncode} before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.1)  # polling interval, bounded by the deadline


def _get(port: int, path: str, host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _sample(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.split("{", 1)[0].split(" ", 1)[0] == name and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class ControlPlane:
    def __init__(self, data_dir: Path) -> None:
        # A fresh SQLite database and CA of its own; REDIS_URL (the test run's) is kept.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL"} and not k.startswith(("MESHUI_", "DJANGO_", "MESH_", "PROXYAGENT_"))
        }
        self.env.update(
            {
                "MESHUI_DATA_DIR": str(data_dir),
                "MESH_GRPC_TLS": "true",
                "MESH_HEARTBEAT_INTERVAL_SECONDS": "1",
            }
        )
        self.processes: list[subprocess.Popen[str]] = []

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, argv: list[str], **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    control = ControlPlane(tmp_path / "data")
    try:
        yield control
    finally:
        control.stop()


def test_the_real_control_plane_issues_certificates_and_agents_talk_mutual_tls(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    control_plane.manage("migrate", "--noinput")
    bundle = tmp_path / "trust-bundle.pem"
    bundle.write_text(control_plane.manage("trustbundle"))
    assert bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
    tokens = {
        account: control_plane.manage(
            "jointoken", "create", "--namespace", "shop", "--service-account", account, "--ttl", "1h"
        ).strip()
        for account in ("web", "reviews")
    }
    grpc_port = free_port()
    meshgrpc = control_plane.start([sys.executable, "manage.py", "meshgrpc", "--bind", f"127.0.0.1:{grpc_port}"])

    ports = {name: {kind: free_port() for kind in ("outbound", "inbound", "admin", "admin_http")} for name in tokens}

    def agent(service: str, app_port: int) -> subprocess.Popen[str]:
        own = ports[service]
        argv = [
            sys.executable, "-m", "proxyagent", "run",
            "--service", service, "--namespace", "shop", "--service-account", service,
            "--app-port", str(app_port),
            "--outbound-port", str(own["outbound"]), "--inbound-port", str(own["inbound"]),
            "--admin-port", str(own["admin"]), "--admin-http-port", str(own["admin_http"]),
            "--control-plane", f"127.0.0.1:{grpc_port}",
            "--trust-bundle", str(bundle),
            "--mtls", "on",
        ]  # fmt: skip
        return control_plane.start(argv, PROXYAGENT_JOIN_TOKEN=tokens[service])

    with running_app("reviews-app") as app:
        agents = [agent("reviews", app.port), agent("web", 1)]
        everyone = [meshgrpc, *agents]

        def metrics(service: str) -> str:
            return _get(ports[service]["admin_http"], "/metrics", "localhost")[1]

        def issued(service: str) -> bool:
            return _sample(metrics(service), "mesh_certificates_issued_total", credential="join_token") == 1

        def ready(service: str) -> bool:
            return _get(ports[service]["admin_http"], "/readyz", "localhost")[0] == 200

        for service in tokens:
            _until(partial(issued, service), f"{service}'s sidecar got its certificate with the join token", everyone)
            _until(partial(ready, service), f"{service}'s sidecar registered over the control plane's TLS", everyone)
        # web learns reviews' endpoint (and the identity it must present) at a heartbeat.
        _, body = _until(
            lambda: (lambda answer: answer if answer[0] == 200 else None)(
                _get(ports["web"]["outbound"], "/echo", "reviews")
            ),
            "web reaches reviews through the mesh",
            everyone,
        )
        assert json.loads(body)["headers"]["x-mesh-source-workload"] == "web-v1"
        assert _sample(metrics("reviews"), "mesh_requests_total", direction="inbound", mtls="true") >= 1
        assert _sample(metrics("reviews"), "mesh_requests_total", direction="inbound", mtls="false") == 0
        assert _sample(metrics("web"), "mesh_requests_total", direction="outbound", mtls="true") >= 1
        # The agent's CLI never shows the token: it came through the environment.
        assert all(tokens["web"] not in str(process.args) for process in everyone)
