"""Config convergence: from applying a new config version to the last agent's ack, for 10, 100 and 1000 agents.

- Agents: real ``proxyagent`` AgentAdmin gRPC servers (``admin_grpc`` serving a
  ``ConfigStore``, as in every sidecar, on uvloop where installed, as the
  agent's command line runs), many per process, in a few processes, each on
  its own loopback port.
- Control plane: a throwaway SQLite database in a temporary directory, the
  agents registered in it as connected agents of namespace ``bench``, and a
  catalog of ``--services`` services with ``--endpoints`` healthy endpoints in
  all: the snapshot every agent gets.
- A round: move one instance to another port (one destination of the
  snapshot changes), bump the mesh version and queue ``push_snapshots`` (what
  ``do_bump_version`` does when its transaction commits) through the real
  Redis broker to a real Celery worker (a process of its own, prefork, one
  pool process: one rollout at a time, DEBUG off as deployed). *Converged*:
  the last agent installed the version (each agent notes when its ConfigStore swapped the new table in,
  on the machine's monotonic clock, which every process shares). *Recorded*:
  the task's result came back, so every agent's outcome was committed and the
  progress published.
- The first round after the worker starts connects to every agent; later
  rounds reuse the worker's channels. The first round is reported on its own,
  the percentiles are over the rounds after it.

Redis is REDIS_URL (``make bench`` starts an embedded one when unset).

    make bench    # or: python -m meshui.launcher.embedded_redis -- python bench/config_convergence.py
    python bench/config_convergence.py --quick    # 5 agents, 1 round, to check the bench still works
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import cpu_ticks, machine, stolen_share  # noqa: E402

GOAL_AGENTS = 1000
GOAL_S = 1.0
WORKER_START_S = 60.0


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- agents --------------------------------------------------------------------------------------------------------


def host_agents(count: int, conn: Connection) -> None:
    """Runs in an agent process: ``count`` AgentAdmin servers; answers ("applied", version) with (count, last time)."""
    from proxyagent.admin_grpc import AgentAdminServicer, start_admin_server
    from proxyagent.config_store import ConfigStore
    from proxyagent.identity import AgentIdentity
    from proxyagent.routing import RoutingTable

    applied: dict[int, tuple[int, float]] = {}

    def note(table: RoutingTable) -> None:
        done, _ = applied.get(table.version, (0, 0.0))
        applied[table.version] = (done + 1, time.monotonic())

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        servers = []
        ports = []
        for i in range(count):
            store = ConfigStore()
            store.on_change(note)
            identity = AgentIdentity(
                service="bench", namespace="bench", workload="bench-v1", address="127.0.0.1", inbound_port=i + 1,
                admin_port=0,
            )  # fmt: skip
            server, port = await start_admin_server("127.0.0.1:0", AgentAdminServicer(store, identity, lambda: True))
            servers.append(server)
            ports.append(port)
        conn.send(ports)

        def answer() -> None:
            while True:
                command = conn.recv()
                if command[0] != "applied":
                    loop.call_soon_threadsafe(stop.set)
                    return
                conn.send(applied.get(command[1], (0, 0.0)))

        threading.Thread(target=answer, daemon=True).start()
        await stop.wait()
        await asyncio.gather(*(server.stop(grace=0) for server in servers))

    try:  # the agent's own event loop, as its command line installs it (proxyagent.cli)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(serve())


@dataclass
class AgentHosts:
    processes: list[Any]
    pipes: list[Connection]
    ports: list[int]

    @classmethod
    def start(cls, agents: int, processes: int) -> AgentHosts:
        context = multiprocessing.get_context("spawn")  # nothing of this process (Django, gRPC) leaks into them
        shares = [agents // processes + (1 if i < agents % processes else 0) for i in range(processes)]
        started, pipes = [], []
        for share in shares:
            ours, theirs = context.Pipe()
            process = context.Process(target=host_agents, args=(share, theirs), daemon=True)
            process.start()
            started.append(process)
            pipes.append(ours)
        ports = [port for pipe in pipes for port in pipe.recv()]
        return cls(started, pipes, ports)

    def applied(self, version: int) -> tuple[int, float]:
        """How many agents installed ``version``, and when the last of them did."""
        for pipe in self.pipes:
            pipe.send(("applied", version))
        answers = [pipe.recv() for pipe in self.pipes]
        return sum(count for count, _ in answers), max(last for _, last in answers)

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop",))
        for process in self.processes:
            process.join(timeout=30)


# --- control plane -------------------------------------------------------------------------------------------------


def build_catalog(ports: list[int], services: int, endpoints: int) -> list[int]:
    """The catalog the snapshot is built from, and an agent row per port; returns the agents' primary keys."""
    from django.utils import timezone

    from meshui.catalog.models import Agent, AgentStatus, HealthStatus, Instance, Namespace, Service, Workload

    namespace = Namespace.objects.create(name="bench")
    for s in range(services):
        service = Service.objects.create(namespace=namespace, name=f"svc{s:03d}")
        workload = Workload.objects.create(service=service, name=f"svc{s:03d}-v1", labels={"version": "v1"})
        share = endpoints // services + (1 if s < endpoints % services else 0)
        Instance.objects.bulk_create(
            Instance(workload=workload, address=f"10.{s // 250}.{s % 250}.{e // 250 + 1}", port=8080 + e % 250,
                     health=HealthStatus.HEALTHY)
            for e in range(share)
        )  # fmt: skip
    now = timezone.now()
    rows = Agent.objects.bulk_create(
        Agent(agent_id=f"bench-{i:05d}", namespace=namespace, admin_address=f"127.0.0.1:{port}",
              status=AgentStatus.DISCONNECTED, last_heartbeat=now)
        for i, port in enumerate(ports)
    )  # fmt: skip
    return [row.pk for row in rows]


def connect_first(agent_pks: list[int], size: int) -> None:
    """Only the first ``size`` agents are connected (a rollout pushes to connected agents only)."""
    from meshui.catalog.models import Agent, AgentStatus

    Agent.objects.filter(pk__in=agent_pks[:size]).update(status=AgentStatus.CONNECTED)
    Agent.objects.filter(pk__in=agent_pks[size:]).update(status=AgentStatus.DISCONNECTED)


def bump() -> int:
    from django.db import transaction

    from meshui.rollout.models import MeshVersion

    with transaction.atomic():
        return MeshVersion.bump()


def move_an_endpoint(round_number: int) -> None:
    """One instance moves to another port: a rollout carries a change, and agents validate what changed."""
    from meshui.catalog.models import Instance

    instance = Instance.objects.order_by("pk")[round_number % Instance.objects.count()]
    # Between its own port and that plus 10000: the catalog's ports are 8080-8329, so no two instances meet.
    moved = instance.port + 10000 if instance.port < 18000 else instance.port - 10000
    Instance.objects.filter(pk=instance.pk).update(port=moved)


def snapshot_bytes(agent_pk: int) -> int:
    from meshui.rollout.models import MeshVersion
    from meshui.rollout.snapshots import build_agent_snapshots

    return build_agent_snapshots(MeshVersion.current(), [agent_pk])[agent_pk].ByteSize()


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: state, ppid, ... (field n of proc(5) at index n - 3)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):  # gone meanwhile
                continue
    return found


def _cpu_ticks(pid: int) -> int:
    """User and system CPU ticks of a process so far (fields 14 and 15 of proc(5))."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _cpu_s(pid: int) -> float:
    return _cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(all, busy) CPU ticks of the machine so far; busy leaves out idle, I/O wait and stolen time."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[0] + fields[1] + fields[2] + fields[5] + fields[6]


@dataclass
class CpuAccount:
    """Over the measured rounds: the machine's CPU time, and how much of it went to processes not of this bench."""

    all_ticks: int = 0
    others_ticks: int = 0

    def measure(self, pids: list[int]) -> tuple[int, int, int]:
        all_ticks, busy = _machine_ticks()
        return all_ticks, busy, sum(_cpu_ticks(pid) for pid in pids)

    def add(self, before: tuple[int, int, int], after: tuple[int, int, int]) -> None:
        self.all_ticks += after[0] - before[0]
        self.others_ticks += max(0, (after[1] - before[1]) - (after[2] - before[2]))

    @property
    def others_share(self) -> float:
        return self.others_ticks / self.all_ticks if self.all_ticks else 0.0


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, env: dict[str, str], queue: str, log: Path) -> Worker:
        argv = [
            sys.executable, "-m", "celery", "-A", "meshui", "worker", "--pool", "prefork", "--concurrency", "1",
            "--queues", queue, "--hostname", f"{queue}@%h", "--loglevel", "INFO", "--without-gossip",
            "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WORKER_START_S
        while " ready." not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        return cls(process, log)

    def cpu_s(self) -> float:
        """CPU seconds used so far by the worker and its pool process."""
        return sum(_cpu_s(pid) for pid in [self.process.pid, *_children(self.process.pid)])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


@dataclass
class Round:
    converged_s: float
    recorded_s: float
    worker_cpu_s: float


def run_round(
    hosts: AgentHosts, worker: Worker, queue: str, size: int, account: CpuAccount, round_number: int
) -> Round:
    from meshui.rollout.tasks import push_snapshots

    ours = [os.getpid(), *(process.pid for process in hosts.processes), worker.process.pid]
    ours += _children(worker.process.pid)
    machine_before = account.measure(ours)
    cpu_before = worker.cpu_s()
    started = time.monotonic()
    move_an_endpoint(round_number)
    version = bump()
    result = push_snapshots.apply_async((version,), queue=queue)
    counts = result.get(timeout=300)
    recorded = time.monotonic()
    if counts != {"acked": size}:
        raise RuntimeError(f"rollout of v{version} to {size} agents: {counts}")
    applied, last = hosts.applied(version)
    if applied != size:
        raise RuntimeError(f"{applied} agents of {size} installed v{version}")
    worker_cpu = worker.cpu_s() - cpu_before
    account.add(machine_before, account.measure(ours))
    return Round(last - started, recorded - started, worker_cpu)


# --- report --------------------------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    rounds: dict[int, list[Round]],
    snapshot_size: int,
    stolen: float,
    others: float,
    processes: int,
) -> list[str]:
    from django.conf import settings

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f}"

    rows = []
    for size, measured in rounds.items():
        warm = measured[1:] or measured
        converged = [r.converged_s for r in warm]
        recorded = [r.recorded_s for r in warm]
        rows.append(
            f"| {size} | {len(warm)} | {ms(statistics.median(converged))} | {ms(percentile(converged, 0.99))} | "
            f"{ms(statistics.median(recorded))} | {ms(percentile(recorded, 0.99))} | {ms(measured[0].converged_s)} | "
            f"{ms(statistics.median(r.worker_cpu_s for r in warm))} |"
        )
    lines = [
        "## Config convergence",
        "",
        "Written by `bench/config_convergence.py`.",
        "",
        f"- Command: `python bench/config_convergence.py --sizes {args.sizes} --rounds {args.rounds} "
        f"--agent-processes {processes} --services {args.services} --endpoints {args.endpoints}`",
        f"- Machine: {machine()}; CPU time stolen by the hypervisor during the run: {stolen:.1%}; taken by "
        f"processes other than this bench's during the rounds: {others:.1%} (the figures are only as steady as "
        "these are low). The agents, the Celery worker, Redis and the database all share these CPUs.",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Agents: real `proxyagent` AgentAdmin gRPC servers (a `ConfigStore` behind `AgentAdminServicer`, on "
        f"{'uvloop' if importlib.util.find_spec('uvloop') else 'the asyncio loop'}, as the agent's command line runs "
        f"them), spread over {processes} processes, each on its own loopback port (in "
        f"production each agent has its own host's CPU). Snapshot: {args.services} services, "
        f"{args.endpoints} endpoints, {snapshot_size} bytes. Before each round one "
        "instance moves to another port, so one destination of the snapshot changes: each agent validates that one "
        "and keeps the others it holds, as after any change to one service.",
        "- Control plane: SQLite in a temporary directory; a Celery worker (prefork, one pool process) on Redis, "
        "with DEBUG off as deployed; "
        f"MESH_ROLLOUT_PARALLELISM={settings.MESH_ROLLOUT_PARALLELISM}.",
        "- A round: move one instance, bump the mesh version and queue `push_snapshots` (as `do_bump_version` does "
        "on commit). "
        "*Converged*: the last agent installed the version; *recorded*: the task's result came back (every outcome "
        "committed, progress published). Percentiles are nearest-rank over the rounds after the first (with fewer "
        "than 100 rounds, p99 is the slowest); the first round, which opens a channel to every agent, is shown "
        "on its own. Worker CPU: the worker's processes, per rollout (median).",
        "",
        "| agents | rounds | converged p50 ms | converged p99 ms | recorded p50 ms | recorded p99 ms "
        "| first round (new channels) converged ms | worker CPU ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    if GOAL_AGENTS in rounds:
        warm = rounds[GOAL_AGENTS][1:] or rounds[GOAL_AGENTS]
        p99 = percentile([r.converged_s for r in warm], 0.99)
        verdict = "met" if p99 <= GOAL_S else "not met"
        lines += [f"Goal: {GOAL_AGENTS} agents converge in ≤ {GOAL_S:g} s p99: {p99:.2f} s, {verdict}.", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help="agent counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per size (the first one is reported apart)")
    parser.add_argument("--agent-processes", type=int, default=0, help="processes hosting the agents (0: CPUs, 2-4)")
    parser.add_argument("--services", type=int, default=10, help="services in the snapshot")
    parser.add_argument("--endpoints", type=int, default=100, help="endpoints in the snapshot, over all services")
    parser.add_argument(
        "--out", default=str(REPO / "docs" / "benchmarks.md"), help="the report to write its section to"
    )
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    parser.add_argument("--quick", action="store_true", help="5 agents, 1 round: check the bench works")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = "5", 1
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    processes = args.agent_processes or min(4, max(2, os.cpu_count() or 2))
    processes = max(1, min(processes, max(sizes)))

    tmp = Path(tempfile.mkdtemp(prefix="meshui-convergence-"))
    # The throwaway database: SQLite in the temporary directory, whatever DATABASE_URL says.
    os.environ.pop("DATABASE_URL", None)
    os.environ["MESHUI_DATA_DIR"] = str(tmp)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshui.settings")
    # As a deployed worker runs: with DEBUG on, Django's debug cursor copies and quotes every query it runs.
    os.environ["MESHUI_DEBUG"] = "0"

    print(f"bench: starting {max(sizes)} agents in {processes} processes", flush=True)
    hosts = AgentHosts.start(max(sizes), processes)
    worker: Worker | None = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from bench.sections import write_section

        call_command("migrate", verbosity=0)
        agent_pks = build_catalog(hosts.ports, args.services, args.endpoints)
        size_bytes = snapshot_bytes(agent_pks[0])
        queue = f"bench-convergence-{uuid.uuid4().hex[:8]}"
        ticks = cpu_ticks()
        account = CpuAccount()
        results: dict[int, list[Round]] = {}
        for size in sizes:
            connect_first(agent_pks, size)
            # A fresh worker per size: its first round opens the channels, as after a worker restart.
            if worker is not None:
                worker.stop()
            worker = Worker.start(dict(os.environ), queue, tmp / f"worker-{size}.log")
            results[size] = []
            for _ in range(args.rounds):
                results[size].append(run_round(hosts, worker, queue, size, account, len(results[size])))
            converged = [r.converged_s * 1000 for r in results[size][1:]] or [results[size][0].converged_s * 1000]
            print(
                f"bench: {size} agents: converged p50 {statistics.median(converged):.0f} ms, "
                f"p99 {percentile(converged, 0.99):.0f} ms, first round {results[size][0].converged_s * 1000:.0f} ms "
                f"(every round, ms: {' '.join(f'{r.converged_s * 1000:.0f}' for r in results[size])})",
                flush=True,
            )
        stolen = stolen_share(ticks, cpu_ticks())
        lines = report(args, results, size_bytes, stolen, account.others_share, processes)
        if args.no_write:
            print("\n".join(lines))
        else:
            write_section(Path(args.out), "config-convergence", lines)
            print(f"bench: wrote {args.out}")
    finally:
        if worker is not None:
            worker.stop()
        hosts.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
