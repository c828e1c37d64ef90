"""Registration and discovery over real gRPC on loopback, with pushes through a real Celery worker and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from asgiref.sync import sync_to_async
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from meshui.catalog.actions import do_expire_silent_agents
from meshui.catalog.models import Agent, AgentStatus, HealthStatus, Instance
from meshui.celery import app
from meshui.launcher.sample_mesh import free_port
from meshui.meshcontrol.server import MeshControlServer
from meshui.rollout.models import ConfigPush, MeshVersion, PushOutcome
from meshui.rollout.tasks import _push_one
from proxyagent.admin_grpc import AgentAdminServicer, start_admin_server
from proxyagent.config_store import ConfigStore
from proxyagent.control_client import ControlPlaneClient, RegistrationRefused
from proxyagent.identity import AgentIdentity
from proxyagent.protocol.v1 import control_pb2, control_pb2_grpc, snapshot_pb2
from tests.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class LocalAgent:
    """The agent's control side (config store, AgentAdmin server, control client), without its proxy."""

    identity: AgentIdentity
    store: ConfigStore
    client: ControlPlaneClient
    admin: grpc.aio.Server

    def endpoints_of(self, service: str) -> list[int]:
        destination = self.store.table.lookup(service, own_namespace="shop")
        return [] if destination is None else [endpoint.port for endpoint in destination.endpoints]


@pytest.fixture
def worker(transactional_db: None) -> Iterator[Any]:
    app.control.purge()  # pushes queued by earlier tests name agents that no longer exist
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10, loglevel="WARNING") as running:
        yield running


@pytest.fixture
async def control_plane(transactional_db: None, settings: Any) -> AsyncIterator[str]:
    settings.MESH_HEARTBEAT_INTERVAL_SECONDS = 1
    server = MeshControlServer("127.0.0.1:0")
    port = await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(grace=0)


@pytest.fixture
async def start_agent(control_plane: str) -> AsyncIterator[Callable[..., Awaitable[LocalAgent]]]:
    agents: list[LocalAgent] = []

    async def start(service: str, *, register: bool = True) -> LocalAgent:
        identity = AgentIdentity(
            service=service,
            namespace="shop",
            workload=f"{service}-v1",
            address="127.0.0.1",
            inbound_port=free_port(),
            admin_port=free_port(),
            labels={"version": "v1"},
        )
        store = ConfigStore()
        client = ControlPlaneClient(control_plane, identity, store, backoff_initial_s=0.05)
        servicer = AgentAdminServicer(store, identity, lambda: client.registered)
        admin, _ = await start_admin_server(f"127.0.0.1:{identity.admin_port}", servicer)
        agent = LocalAgent(identity, store, client, admin)
        agents.append(agent)
        if register:
            await client.register()
        return agent

    yield start
    for agent in agents:
        await agent.admin.stop(grace=0)
        await agent.client.close()


async def test_agents_discover_each_other_through_pushes(
    worker: Any, start_agent: Callable[..., Awaitable[LocalAgent]]
) -> None:
    reviews = await start_agent("reviews")
    assert reviews.endpoints_of("reviews") == [reviews.identity.inbound_port], "its own instance, from Register"
    row = await Agent.objects.select_related("instance").aget(agent_id=reviews.identity.agent_id)
    assert row.status == AgentStatus.CONNECTED
    assert row.instance is not None
    assert row.instance.health == HealthStatus.HEALTHY

    ratings = await start_agent("ratings")
    await eventually(lambda: reviews.endpoints_of("ratings") == [ratings.identity.inbound_port], "ratings pushed")
    await eventually(
        lambda: ConfigPush.objects.filter(agent=row, outcome=PushOutcome.ACKED).aexists(), "push recorded as acked"
    )
    latest = await sync_to_async(MeshVersion.current)()
    await eventually(lambda: Agent.objects.filter(pk=row.pk, config_version=latest).aexists(), "acked version recorded")

    await ratings.client.deregister()
    await eventually(lambda: reviews.endpoints_of("ratings") == [], "ratings removed at once on deregistration")
    assert not await Instance.objects.filter(port=ratings.identity.inbound_port).aexists()


async def test_a_missed_push_is_caught_up_by_the_next_heartbeat(
    worker: Any, start_agent: Callable[..., Awaitable[LocalAgent]]
) -> None:
    reviews = await start_agent("reviews")
    await reviews.admin.stop(grace=0)  # the push to reviews will fail
    ratings = await start_agent("ratings")
    agent = await Agent.objects.aget(agent_id=reviews.identity.agent_id)
    await eventually(
        lambda: ConfigPush.objects.filter(agent=agent, outcome=PushOutcome.UNREACHABLE).aexists(), "failed push"
    )
    assert reviews.endpoints_of("ratings") == []

    await reviews.client.heartbeat()
    assert reviews.endpoints_of("ratings") == [ratings.identity.inbound_port]
    assert reviews.store.version == await sync_to_async(MeshVersion.current)()


async def test_silent_agents_leave_endpoint_sets_until_they_speak_again(
    start_agent: Callable[..., Awaitable[LocalAgent]],
) -> None:
    reviews = await start_agent("reviews")
    expired = await sync_to_async(do_expire_silent_agents)(timezone.now() + timedelta(minutes=1), timedelta(seconds=15))
    assert expired == [reviews.identity.agent_id]
    agent = await Agent.objects.select_related("instance").aget(agent_id=reviews.identity.agent_id)
    assert agent.status == AgentStatus.STALE
    assert agent.instance is not None
    assert agent.instance.health == HealthStatus.UNHEALTHY

    await reviews.client.heartbeat()
    assert reviews.endpoints_of("reviews") == [reviews.identity.inbound_port]
    await agent.arefresh_from_db()
    assert agent.status == AgentStatus.CONNECTED


async def test_an_unknown_agent_is_told_to_register_again(
    control_plane: str, start_agent: Callable[..., Awaitable[LocalAgent]]
) -> None:
    reviews = await start_agent("reviews")
    await Agent.objects.filter(agent_id=reviews.identity.agent_id).adelete()
    await reviews.client.heartbeat()
    assert reviews.client.registered is False
    await reviews.client.register()
    assert await Agent.objects.filter(agent_id=reviews.identity.agent_id).aexists()


async def test_the_agent_keeps_retrying_while_the_control_plane_is_down(
    start_agent: Callable[..., Awaitable[LocalAgent]],
) -> None:
    agent = await start_agent("reviews", register=False)
    dead = ControlPlaneClient(f"127.0.0.1:{free_port()}", agent.identity, agent.store, backoff_initial_s=0.01)
    task = asyncio.create_task(dead.run())
    try:
        await eventually(lambda: dead.failures_total >= 3, "three failed attempts, each backed off")
        assert not dead.registered
    finally:
        task.cancel()
        await dead.close()


async def test_invalid_registrations_are_refused_with_the_field(control_plane: str) -> None:
    identity = AgentIdentity(
        service="Bad_Service", namespace="shop", workload="w", address="127.0.0.1", inbound_port=1, admin_port=2
    )
    client = ControlPlaneClient(control_plane, identity, ConfigStore())
    with pytest.raises(RegistrationRefused, match="service: Use lowercase letters"):
        await client.register()
    await client.close()
    assert not await Agent.objects.aexists()


async def test_deregistering_an_unknown_agent_is_not_found(control_plane: str) -> None:
    async with grpc.aio.insecure_channel(control_plane) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await control_pb2_grpc.MeshControlStub(channel).Deregister(control_pb2.DeregisterRequest(agent_id="ghost"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_agent_rejects_an_invalid_push_and_keeps_its_config(
    start_agent: Callable[..., Awaitable[LocalAgent]],
) -> None:
    reviews = await start_agent("reviews")
    before = reviews.store.table
    bad = snapshot_pb2.Snapshot(
        version=before.version + 1,
        destinations=[
            snapshot_pb2.Destination(service="x", namespace="shop", endpoints=[snapshot_pb2.Endpoint(port=0)])
        ],
    )
    result = await _push_one(1, f"127.0.0.1:{reviews.identity.admin_port}", bad, deadline_s=5)
    assert result.outcome == PushOutcome.REJECTED
    assert "out of range" in result.detail or "invalid address" in result.detail
    assert result.applied_version == before.version
    assert reviews.store.table is before


async def test_an_agent_ahead_of_the_control_plane_resyncs_by_registering_again(
    start_agent: Callable[..., Awaitable[LocalAgent]],
) -> None:
    reviews = await start_agent("reviews")
    # As if the control plane's database had been restored from an older backup.
    reviews.store.apply(snapshot_pb2.Snapshot(version=reviews.store.version + 100))
    await reviews.client.heartbeat()
    assert reviews.client.registered is False
    await reviews.client.register()
    assert reviews.store.version == await sync_to_async(MeshVersion.current)()
    assert reviews.endpoints_of("reviews") == [reviews.identity.inbound_port]


async def test_a_refused_agent_stops_retrying_and_says_why(
    control_plane: str, caplog: pytest.LogCaptureFixture
) -> None:
    identity = AgentIdentity(
        service="ok", namespace="Bad_NS", workload="w", address="127.0.0.1", inbound_port=1, admin_port=2
    )
    client = ControlPlaneClient(control_plane, identity, ConfigStore())
    await asyncio.wait_for(client.run(), timeout=10)  # returns instead of retrying forever
    await client.close()
    assert "refused this agent's registration: namespace:" in caplog.text
