"""Rollouts to real agents over gRPC on loopback: acks, an agent down, a rejecting one, bounded parallelism."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from celery.exceptions import SoftTimeLimitExceeded
from channels.layers import get_channel_layer

from meshui.catalog.models import Agent
from meshui.meshcontrol.server import MeshControlServer
from meshui.rollout.models import ConfigPush, MeshVersion, PushOutcome
from meshui.rollout.progress import ROLLOUT_GROUP, RolloutProgress
from meshui.rollout.push import PushTarget, RetryPolicy, serialize_once
from meshui.rollout.tasks import push_snapshots, run_rollout
from proxyagent.control_client import ControlPlaneClient
from proxyagent.protocol.v1 import snapshot_pb2
from tests.rollout.conftest import (
    ConcurrencyMeter,
    FlakyAdmin,
    Fleet,
    GatedAdmin,
    RejectingAdmin,
    bump_version,
    eventually,
)

pytestmark = pytest.mark.django_db(transaction=True)

rollout_now = sync_to_async(push_snapshots, thread_sensitive=True)


async def _pushes(version: int) -> dict[str, tuple[str, str, int]]:
    """Each agent's ConfigPush for ``version``: (outcome, detail, attempts), by agent id."""
    rows = ConfigPush.objects.filter(version=version).values_list("agent__agent_id", "outcome", "detail", "attempts")
    return {agent_id: (outcome, detail, attempts) async for agent_id, outcome, detail, attempts in rows}


async def _config_versions() -> dict[str, int | None]:
    return {agent_id: v async for agent_id, v in Agent.objects.values_list("agent_id", "config_version")}


@pytest.fixture
def fast_retries(settings: Any) -> RetryPolicy:
    settings.MESH_ROLLOUT_PUSH_ATTEMPTS = 3
    settings.MESH_ROLLOUT_RETRY_BASE_SECONDS = 0.05
    settings.MESH_ROLLOUT_RETRY_MAX_SECONDS = 0.2
    settings.MESH_PUSH_TIMEOUT_SECONDS = 5
    return RetryPolicy(3, 0.05, 0.2)


async def test_every_agent_acks_and_the_rollout_is_recorded_and_published(fleet: Fleet) -> None:
    agents = [await fleet.start(f"app{i % 3}") for i in range(9)]
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(ROLLOUT_GROUP, channel)
    try:
        version = await bump_version()
        counts = await rollout_now(version)

        assert counts == {"acked": 9}
        for agent in agents:
            assert agent.store.version == version
            # The catalog's own snapshot: every agent's instance is an endpoint of its service.
            assert len(agent.store.table.destinations) == 3
        assert await _pushes(version) == {a.agent_id: ("acked", "", 1) for a in agents}
        assert await _config_versions() == {a.agent_id: version for a in agents}

        # Progress on the Channels group: all pending first, then outcomes, then done with every agent acked.
        ours = {a.agent_id for a in agents}
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not (events and events[-1]["done"]):
            event = await asyncio.wait_for(layer.receive(channel), max(0.1, deadline - time.monotonic()))
            if event["version"] == version and (not events or event["rollout"] == events[0]["rollout"]):
                events.append(event)
        assert events[0]["type"] == "rollout.progress"
        assert (events[0]["total"], events[0]["pending"], events[0]["outcomes"]) == (9, 9, [])
        assert (events[-1]["acked"], events[-1]["pending"], events[-1]["failed"]) == (9, 0, 0)
        assert events[-1]["namespaces"] == {
            "shop": {"total": 9, "acked": 9, "rejected": 0, "unreachable": 0, "failed": 0, "pending": 0}
        }
        outcomes = [row for event in events for row in event["outcomes"]]
        assert sorted(row["agent_id"] for row in outcomes) == sorted(ours)
        assert {(row["outcome"], row["applied_version"]) for row in outcomes} == {("acked", version)}
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

        # Nobody is behind any more: the next run has nothing to do.
        assert await rollout_now(version) == {}
    finally:
        await layer.group_discard(ROLLOUT_GROUP, channel)


async def test_an_agent_down_is_retried_then_catches_up_through_its_heartbeat(
    fleet: Fleet, fast_retries: RetryPolicy, settings: Any
) -> None:
    settings.MESH_HEARTBEAT_INTERVAL_SECONDS = 1
    up = [await fleet.start("app") for _ in range(3)]
    down = await fleet.start("app", serving=False)  # its port refuses connections
    version = await bump_version()

    started = time.monotonic()
    counts = await rollout_now(version)
    elapsed = time.monotonic() - started

    assert counts == {"acked": 3, "unreachable": 1}
    pushes = await _pushes(version)
    outcome, detail, attempts = pushes[down.agent_id]
    assert (outcome, attempts) == (PushOutcome.UNREACHABLE, 3), "retried up to MESH_ROLLOUT_PUSH_ATTEMPTS"
    assert detail.startswith("UNAVAILABLE"), detail
    # Two backoffs came between the three attempts: each at least half its exponential step.
    assert elapsed >= fast_retries.base_delay_s / 2 + fast_retries.base_delay_s
    assert all(pushes[a.agent_id] == ("acked", "", 1) for a in up)
    assert down.store.version == 0
    assert (await _config_versions())[down.agent_id] is None

    # Back: its heartbeat hands it the snapshot, and its next heartbeat reports it applied.
    await fleet.serve(down)
    control = MeshControlServer("127.0.0.1:0")
    port = await control.start()
    client = ControlPlaneClient(f"127.0.0.1:{port}", down.identity, down.store)
    try:
        await client.heartbeat()
        assert down.store.version == version
        await client.heartbeat()
        await eventually(
            lambda: Agent.objects.filter(pk=down.pk, config_version=version).aexists(), "heartbeat recorded"
        )
    finally:
        await client.close()
        await control.stop(grace=0)
    # Everyone holds the version now: the next push has nobody left to push to.
    assert await rollout_now(version) == {}


async def test_an_agent_back_between_attempts_gets_the_push_on_a_retry(fleet: Fleet, fast_retries: RetryPolicy) -> None:
    flaky: list[FlakyAdmin] = []

    def failing_twice(store: Any, identity: Any) -> FlakyAdmin:
        flaky.append(FlakyAdmin(store, identity, failures=2))
        return flaky[-1]

    agent = await fleet.start("app", servicer=failing_twice)
    version = await bump_version()

    assert await rollout_now(version) == {"acked": 1}
    assert (await _pushes(version))[agent.agent_id] == ("acked", "", 3)
    assert agent.store.version == version
    calls = flaky[0].calls
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert len(gaps) == 2
    # Exponential backoff with jitter: the n-th wait is in [step/2, step], step = base * 2^(n-1).
    assert gaps[0] >= fast_retries.base_delay_s / 2
    assert gaps[1] >= fast_retries.base_delay_s


async def test_a_rejecting_agent_keeps_its_config_and_its_reason_is_recorded(
    fleet: Fleet, fast_retries: RetryPolicy
) -> None:
    good = [await fleet.start("app") for _ in range(3)]
    rejecting: list[RejectingAdmin] = []

    def rejecter(store: Any, identity: Any) -> RejectingAdmin:
        rejecting.append(RejectingAdmin(store, identity))
        return rejecting[-1]

    bad = await fleet.start("app", servicer=rejecter)
    version = await bump_version()

    assert await rollout_now(version) == {"acked": 3, "rejected": 1}
    pushes = await _pushes(version)
    assert pushes[bad.agent_id] == ("rejected", RejectingAdmin.REASON, 1)
    assert rejecting[0].calls == 1, "an answer is final: a rejection is not retried"
    versions = await _config_versions()
    assert versions[bad.agent_id] == 0, "what the agent says it still holds"
    for agent in good:
        assert pushes[agent.agent_id] == ("acked", "", 1)
        assert versions[agent.agent_id] == version
        assert agent.store.version == version


async def test_parallel_pushes_never_exceed_the_limit(fleet: Fleet, settings: Any) -> None:
    settings.MESH_ROLLOUT_PARALLELISM = 4
    meter = ConcurrencyMeter(limit=4, expected=14)
    agents = [await fleet.start("app", servicer=meter.servicer) for _ in range(14)]
    version = await bump_version()

    assert await rollout_now(version) == {"acked": 14}
    assert meter.max_in_flight == 4, "the limit is reached, never exceeded"
    assert all(agent.store.version == version for agent in agents)


async def test_an_agent_ahead_counts_as_acked_and_its_version_is_never_lowered(fleet: Fleet) -> None:
    agent = await fleet.start("app")
    other = await fleet.start("app")
    version = await bump_version()
    # As if a newer push reached it first: it holds a later version than this rollout sends.
    assert agent.store.apply(snapshot_pb2.Snapshot(version=version + 5))[0]

    assert await rollout_now(version) == {"acked": 2}
    pushes = await _pushes(version)
    assert pushes[agent.agent_id] == ("acked", f"already holds version {version + 5}", 1)
    assert pushes[other.agent_id] == ("acked", "", 1)
    assert await _config_versions() == {agent.agent_id: version + 5, other.agent_id: version}
    assert agent.store.version == version + 5, "the agent refused to go back"


async def test_a_rollout_always_pushes_the_current_version(fleet: Fleet) -> None:
    agent = await fleet.start("app")
    old = await bump_version()
    current = await bump_version()
    # A task queued for the old version runs after the bump: it sends the current snapshot.
    assert await rollout_now(old) == {"acked": 1}
    assert agent.store.version == current == await sync_to_async(MeshVersion.current)()
    assert set(await _pushes(current)) == {agent.agent_id}
    assert await _pushes(old) == {}


def test_backoff_grows_exponentially_within_its_jitter_and_its_cap() -> None:
    policy = RetryPolicy(attempts=5, base_delay_s=0.1, max_delay_s=0.5)
    rng = random.Random(1)  # noqa: S311 - jitter, not secrets
    for failures, step in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)):
        delays = [policy.backoff(failures, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4, "jittered"


async def test_a_rollout_stopped_by_its_time_limit_keeps_what_it_recorded(fleet: Fleet) -> None:
    gate = asyncio.Event()  # never opened while the rollout runs: these agents hang
    arrived: list[str] = []
    fast = await fleet.start("app")
    hanging = [await fleet.start("app", servicer=lambda s, i: GatedAdmin(s, i, gate, arrived)) for _ in range(2)]
    version = await bump_version()
    published: list[dict[str, Any]] = []

    def publish(event: dict[str, Any]) -> None:
        published.append(event)
        if event["outcomes"]:  # the fast agent's outcome is committed: now the time runs out
            raise SoftTimeLimitExceeded()

    @sync_to_async
    def rollout() -> None:
        rows = [(a.pk, a.agent_id, "shop", a.address) for a in [fast, *hanging]]
        targets = [PushTarget(pk, address, snapshot_pb2.Snapshot(version=version).SerializeToString())
                   for pk, _, _, address in rows]  # fmt: skip
        progress = RolloutProgress(version, version, {pk: (agent_id, ns) for pk, agent_id, ns, _ in rows})
        run_rollout(version, targets, progress, publish=publish)

    try:
        with pytest.raises(SoftTimeLimitExceeded):
            await asyncio.wait_for(rollout(), timeout=20)  # not held up by the hanging agents
    finally:
        gate.set()
    assert await _pushes(version) == {fast.agent_id: ("acked", "", 1)}
    assert published[-1]["done"] is True
    assert published[-1]["error"].startswith("SoftTimeLimitExceeded")
    assert (published[-1]["acked"], published[-1]["pending"]) == (1, 2)


def test_each_distinct_snapshot_is_serialized_once() -> None:
    shared = snapshot_pb2.Snapshot(version=7, destinations=[snapshot_pb2.Destination(service="a", namespace="shop")])
    equal = snapshot_pb2.Snapshot()
    equal.CopyFrom(shared)
    other = snapshot_pb2.Snapshot(version=7)
    payloads = serialize_once({1: shared, 2: shared, 3: equal, 4: other})
    assert payloads[1] is payloads[2], "one object, one serialization"
    assert payloads[3] is payloads[1], "equal snapshots share one payload"
    assert payloads[4] != payloads[1]
    assert snapshot_pb2.Snapshot.FromString(payloads[1]) == shared
