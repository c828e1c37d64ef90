"""A rollout outlives the Celery worker running it: killed with SIGKILL mid-rollout, the rollout still completes.

Real ``celery -A meshui worker`` processes on the real Redis broker and the
test database; real agents (gRPC on loopback) in this process, slow on
purpose: their calls wait for a gate the test opens once the worker is dead.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings

from meshui.catalog.models import Agent
from meshui.celery import app
from meshui.rollout.models import ConfigPush, PushOutcome
from meshui.rollout.tasks import push_snapshots
from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from tests.rollout.conftest import Fleet, FleetAgent, GatedAdmin, bump_version, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
WORKER_DEADLINE_S = 60.0


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the worker and its pool: no warm shutdown, no chance to hand its message back."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc/*/stat: the parent's pid follows the state after the name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Broker:
    prefix: str
    start_worker: Callable[..., WorkerProcess]

    def enqueue(self, version: int) -> None:
        """``push_snapshots.delay(version)``, on this test's own broker keys."""
        with app.connection_for_write(transport_options={"global_keyprefix": self.prefix}) as connection:
            push_snapshots.apply_async((version,), connection=connection)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    prefix = f"meshui-test-{uuid.uuid4().hex[:12]}:"
    workers: list[WorkerProcess] = []

    def start_worker(name: str, *, visibility_timeout_s: int = 3600) -> WorkerProcess:
        log = tmp_path / f"{name}.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MESH_CA_")},
            # The test's own CA (the snapshots carry its trust bundle), not the data dir's.
            "MESH_CA_DIR": str(settings.MESH_CA_DIR),
            "DJANGO_SETTINGS_MODULE": "tests.rollout.worker_settings",
            "MESH_TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
            "MESH_TEST_BROKER_PREFIX": prefix,
            "MESH_TEST_VISIBILITY_TIMEOUT": str(visibility_timeout_s),
            # Longer than the agents are held, so the held calls never time out into retries.
            "MESH_PUSH_TIMEOUT_SECONDS": "60",
        }
        argv = [
            sys.executable, "-m", "celery", "-A", "meshui", "worker", "--pool", "prefork", "--concurrency", "1",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = WorkerProcess(process, log)
        workers.append(worker)
        deadline = time.monotonic() + WORKER_DEADLINE_S
        while " ready." not in worker.text():
            assert process.poll() is None, f"worker {name} exited:\n{worker.text()}"
            assert time.monotonic() < deadline, f"worker {name} not ready in {WORKER_DEADLINE_S} s:\n{worker.text()}"
            time.sleep(0.05)  # polling the log, bounded by the deadline
        return worker

    yield Broker(prefix, start_worker)
    for worker in workers:
        worker.kill()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class SlowFleet:
    fast: FleetAgent
    slow: list[FleetAgent]
    gate: asyncio.Event
    arrived: list[str]

    @property
    def everyone(self) -> list[FleetAgent]:
        return [self.fast, *self.slow]


@pytest.fixture
async def slow_fleet(fleet: Fleet) -> AsyncIterator[SlowFleet]:
    """One agent that answers at once, and three that hold every call until the gate opens."""
    gate = asyncio.Event()
    arrived: list[str] = []

    def gated(store: ConfigStore, identity: AgentIdentity) -> GatedAdmin:
        return GatedAdmin(store, identity, gate, arrived)

    fast = await fleet.start("app")
    slow = [await fleet.start("app", servicer=gated) for _ in range(3)]
    yield SlowFleet(fast, slow, gate, arrived)
    gate.set()


async def _acked(agents: list[FleetAgent], version: int) -> set[str]:
    acks = ConfigPush.objects.filter(version=version, outcome=PushOutcome.ACKED)
    acked = {agent_id async for agent_id in acks.values_list("agent__agent_id", flat=True)}
    return acked & {agent.agent_id for agent in agents}


async def _mid_rollout(fleet: SlowFleet, version: int) -> None:
    """Wait until the rollout has recorded the fast agent and the slow ones all hold a call."""
    await eventually(lambda: _all_acked([fleet.fast], version), "the first agent's ack recorded", WORKER_DEADLINE_S)
    await eventually(lambda: len(fleet.arrived) == 3, "every slow agent called", WORKER_DEADLINE_S)
    assert await _acked(fleet.slow, version) == set(), "the slow agents have not answered"


async def _completed(fleet: SlowFleet, version: int, *workers: WorkerProcess) -> None:
    everyone = fleet.everyone
    try:
        await eventually(
            lambda: _all_acked(everyone, version), "every agent acked, after the worker was killed", WORKER_DEADLINE_S
        )
    except AssertionError as failed:
        logs = "\n".join(f"--- {worker.log.name}\n{worker.text()[-4000:]}" for worker in workers)
        raise AssertionError(f"{failed}\n{logs}") from None
    for agent in everyone:
        assert agent.store.version == version
    rows = Agent.objects.filter(pk__in=[a.pk for a in everyone]).values_list("config_version", flat=True)
    assert {v async for v in rows} == {version}


async def _all_acked(agents: list[FleetAgent], version: int) -> bool:
    return await _acked(agents, version) == {agent.agent_id for agent in agents}


async def test_a_rollout_completes_after_its_worker_is_killed_and_another_starts(
    broker: Broker, slow_fleet: SlowFleet
) -> None:
    first = await asyncio.to_thread(broker.start_worker, "doomed")
    version = await bump_version()
    broker.enqueue(version)
    await _mid_rollout(slow_fleet, version)

    await asyncio.to_thread(first.kill)
    slow_fleet.gate.set()  # the calls the dead worker made are answered into the void
    # The message was never acknowledged: once its visibility timeout passes, the new worker takes it again.
    second = await asyncio.to_thread(broker.start_worker, "successor", visibility_timeout_s=1)
    await _completed(slow_fleet, version, first, second)
    # The same message, run again: it pushed only to the agents the killed run had not recorded.
    (task_id,) = re.findall(r"push_snapshots\[([0-9a-f-]+)\] received", first.text())
    # Its outcomes are committed before the task returns: wait for the line rather than expect it already.
    await eventually(lambda: f"push_snapshots[{task_id}] succeeded" in second.text(), "the task succeeded")
    assert f"rolling out v{version} to 3 agents" in second.text()


async def test_a_rollout_runs_again_when_its_pool_process_is_killed(broker: Broker, slow_fleet: SlowFleet) -> None:
    worker = await asyncio.to_thread(broker.start_worker, "survivor")
    version = await bump_version()
    broker.enqueue(version)
    await _mid_rollout(slow_fleet, version)

    # Only the pool process running the task dies; the worker sees it lost and puts the message back at once.
    (child,) = _children(worker.process.pid)
    os.kill(child, signal.SIGKILL)
    slow_fleet.gate.set()
    await _completed(slow_fleet, version, worker)
    assert "WorkerLostError" in worker.text() or "Worker exited prematurely" in worker.text()
