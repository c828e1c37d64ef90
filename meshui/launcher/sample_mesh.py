"""The demo's sample application: which services exist, who calls whom, and the processes that run them."""

from __future__ import annotations

import json
import secrets
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

NAMESPACE = "shop"
# Where the demo's unexpected caller lives: the shop's policy (manage.py demo_policy) lets only its own namespace in.
OUTSIDER_NAMESPACE = "jobs"


@dataclass(frozen=True)
class SampleWorkload:
    service: str
    version: str
    calls: tuple[str, ...] = ()
    error_rate: float = 0.0
    slow_rate: float = 0.0
    namespace: str = NAMESPACE


# web → catalog → inventory, web → reviews (v1, v2) → ratings; a load generator calls web.
TOPOLOGY: tuple[SampleWorkload, ...] = (
    SampleWorkload("web", "v1", ("catalog", "reviews"), error_rate=0.01),
    SampleWorkload("catalog", "v1", ("inventory",), slow_rate=0.02),
    SampleWorkload("inventory", "v1", error_rate=0.03),
    SampleWorkload("reviews", "v1", ("ratings",)),
    SampleWorkload("reviews", "v2", ("ratings",), error_rate=0.05, slow_rate=0.1),
    SampleWorkload("ratings", "v1", error_rate=0.02),
)
LOAD_GENERATOR = SampleWorkload("loadgen", "v1", ("web",))
# A batch job of another namespace that calls reviews directly, which shop's policy denies: the red edge.
OUTSIDER = SampleWorkload("batch", "v1", (f"reviews.{NAMESPACE}",), namespace=OUTSIDER_NAMESPACE)
OUTSIDER_RATE = 1.0
# Every workload with a sidecar, in the order of ``plan()``.
WORKLOADS = (*TOPOLOGY, LOAD_GENERATOR, OUTSIDER)


@dataclass
class AgentPorts:
    service: str
    version: str
    namespace: str
    app: int
    outbound: int
    inbound: int
    admin: int
    admin_http: int


# Where the kernel does not take ports for outgoing connections (below its ephemeral range, whatever that is).
_PLANNED_PORTS = range(20000, 32768)


class _PortPlanner:
    """Hands out ports in turn from a random start, so one process never hands out the same port twice."""

    def __init__(self) -> None:
        self._ports: range | None = None  # read from the kernel on first use, not at import
        self._next = 0

    def take(self) -> int:
        if self._ports is None:
            self._ports = range(
                _PLANNED_PORTS.start, max(_PLANNED_PORTS.start + 1, min(_PLANNED_PORTS.stop, _ephemeral_low()))
            )
            self._next = secrets.randbelow(len(self._ports))
        ports = self._ports
        for _ in range(len(ports)):
            port = ports[self._next % len(ports)]
            self._next += 1
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        with socket.socket() as sock:  # that range is all taken: the kernel's choice
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_planner = _PortPlanner()


def free_port() -> int:
    """A loopback port free now, for a process started later to listen on.

    Chosen below the kernel's ephemeral range: a port bind(0) hands out comes from that range, so an outgoing
    connection opened before the listener binds may take it ("address already in use" at the sidecar's start).
    """
    return _planner.take()


def plan() -> list[AgentPorts]:
    """The workloads' ports: the topology's, then the load generator's, then the outsider's."""
    return [
        AgentPorts(w.service, w.version, w.namespace, free_port(), free_port(), free_port(), free_port(), free_port())
        for w in WORKLOADS
    ]


def identity_of(workload: SampleWorkload | AgentPorts) -> str:
    """``namespace/service-account``: each service runs as a service account of its own name."""
    return f"{workload.namespace}/{workload.service}"


def agent_argv(ports: AgentPorts, control_plane: str, trust_bundle: Path | None = None) -> list[str]:
    """The sidecar's command line; with ``trust_bundle`` it joins with mutual TLS (its join token comes in
    PROXYAGENT_JOIN_TOKEN: command lines are readable by every user of the machine)."""
    argv = [
        sys.executable, "-m", "proxyagent", "run",
        "--service", ports.service, "--namespace", ports.namespace, "--version", ports.version,
        "--service-account", ports.service,
        "--app-port", str(ports.app), "--outbound-port", str(ports.outbound), "--inbound-port", str(ports.inbound),
        "--admin-port", str(ports.admin), "--admin-http-port", str(ports.admin_http),
        "--control-plane", control_plane, "--log-level", "WARNING",
    ]  # fmt: skip
    if trust_bundle is not None:
        argv += ["--trust-bundle", str(trust_bundle), "--mtls", "on"]
    return argv


def app_argv(workload: SampleWorkload, ports: AgentPorts) -> list[str]:
    return [
        sys.executable, "-m", "meshui.launcher.sample_app", "--name", f"{workload.service}-{workload.version}",
        "--port", str(ports.app), "--calls", ",".join(workload.calls), "--outbound", f"127.0.0.1:{ports.outbound}",
        "--error-rate", str(workload.error_rate), "--slow-rate", str(workload.slow_rate),
    ]  # fmt: skip


def load_generator_argv(ports: AgentPorts, rate: float, host_header: str = "web") -> list[str]:
    return [
        sys.executable, "-m", "meshui.launcher.load_generator",
        "--target", f"127.0.0.1:{ports.outbound}", "--host-header", host_header, "--rate", str(rate),
    ]  # fmt: skip


def write_manifest(path: Path, agents: list[AgentPorts]) -> None:
    """Where everything listens, for people (and the demo test) to find each agent's /metrics."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"namespace": NAMESPACE, "agents": [asdict(a) for a in agents]}, indent=2))
