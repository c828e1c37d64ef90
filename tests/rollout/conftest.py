"""Agents for rollout tests: real ``AgentAdmin`` gRPC servers on loopback, each with its row in the catalog.

An agent here is the control side of a sidecar (its ``ConfigStore`` behind the
real ``AgentAdminServicer``), or a servicer that misbehaves on purpose; its
catalog rows are written directly, as a registration would leave them, so no
push is queued behind the test's back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from meshui.catalog.models import Agent, AgentStatus, HealthStatus, Instance, Namespace, Service, Workload
from meshui.launcher.sample_mesh import free_port
from meshui.rollout.models import MeshVersion
from proxyagent.admin_grpc import AgentAdminServicer, bind_admin_server
from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from proxyagent.protocol.v1 import admin_pb2, admin_pb2_grpc, snapshot_pb2
from tests import waiting

NAMESPACE = "shop"
DEADLINE_S = 30.0
Context = grpc.aio.ServicerContext[Any, Any]
ServicerFactory = Callable[[ConfigStore, AgentIdentity], admin_pb2_grpc.AgentAdminServicer]


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], what: str, deadline_s: float = DEADLINE_S
) -> None:
    """The shared wait, with the rollout tests' longer deadline."""
    await waiting.eventually(condition, what, deadline_s)


@sync_to_async
def bump_version() -> int:
    """A new mesh version, without queueing its push (the test runs the rollout itself)."""
    with transaction.atomic():
        return MeshVersion.bump()


@dataclass
class FleetAgent:
    identity: AgentIdentity
    store: ConfigStore
    pk: int
    servicer: admin_pb2_grpc.AgentAdminServicer
    server: grpc.aio.Server | None = None

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.identity.admin_port}"


@dataclass
class Fleet:
    agents: list[FleetAgent] = field(default_factory=list)

    async def start(
        self, service: str = "app", *, servicer: ServicerFactory | None = None, serving: bool = True
    ) -> FleetAgent:
        """An agent of ``service`` with its catalog rows; its admin server listens unless ``serving`` is False."""
        index = len(self.agents)
        identity = AgentIdentity(
            service=service,
            namespace=NAMESPACE,
            workload=f"{service}-v1",
            address="127.0.0.1",
            inbound_port=free_port(),
            admin_port=free_port(),
        )
        store = ConfigStore()
        made = (servicer or _real_servicer)(store, identity)
        pk = await _catalog_rows(identity, index)
        agent = FleetAgent(identity, store, pk, made)
        self.agents.append(agent)
        if serving:
            await self.serve(agent)
        return agent

    async def serve(self, agent: FleetAgent) -> None:
        """Start (or start again) the agent's admin gRPC server, on its own port."""
        server, _ = bind_admin_server(agent.address)
        admin_pb2_grpc.add_AgentAdminServicer_to_server(agent.servicer, server)
        await server.start()
        agent.server = server

    async def stop(self, agent: FleetAgent) -> None:
        if agent.server is not None:
            await agent.server.stop(grace=0)
            agent.server = None

    async def close(self) -> None:
        for agent in self.agents:
            await self.stop(agent)


def _real_servicer(store: ConfigStore, identity: AgentIdentity) -> admin_pb2_grpc.AgentAdminServicer:
    return AgentAdminServicer(store, identity, lambda: True)


@sync_to_async
def _catalog_rows(identity: AgentIdentity, index: int) -> int:
    """What registering the agent leaves in the catalog: its instance (healthy) and the agent, connected."""
    now = timezone.now()
    namespace, _ = Namespace.objects.get_or_create(name=identity.namespace)
    service, _ = Service.objects.get_or_create(namespace=namespace, name=identity.service)
    workload, _ = Workload.objects.get_or_create(service=service, name=identity.workload)
    instance = Instance.objects.create(
        workload=workload, address=identity.address, port=identity.inbound_port, health=HealthStatus.HEALTHY,
        last_seen=now,
    )  # fmt: skip
    agent = Agent.objects.create(
        agent_id=identity.agent_id, namespace=namespace, instance=instance, version=identity.agent_version,
        admin_address=f"{identity.address}:{identity.admin_port}", status=AgentStatus.CONNECTED, last_heartbeat=now,
    )  # fmt: skip
    return agent.pk


@pytest.fixture
async def fleet(transactional_db: None) -> AsyncIterator[Fleet]:
    built = Fleet()
    yield built
    await built.close()


class RejectingAdmin(AgentAdminServicer):
    """A misbehaving agent: it refuses every snapshot, with a reason, and keeps what it had."""

    REASON = "refusing on purpose: this agent rejects every snapshot"

    def __init__(self, store: ConfigStore, identity: AgentIdentity) -> None:
        super().__init__(store, identity, lambda: True)
        self.store = store
        self.calls = 0

    async def ApplyConfig(  # noqa: N802 - gRPC method names are the contract's
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        self.calls += 1
        return admin_pb2.ApplyConfigResponse(accepted=False, applied_version=self.store.version, reason=self.REASON)


class FlakyAdmin(AgentAdminServicer):
    """A real agent whose first ``failures`` calls fail in transport (UNAVAILABLE); it notes when each call came."""

    def __init__(self, store: ConfigStore, identity: AgentIdentity, failures: int) -> None:
        super().__init__(store, identity, lambda: True)
        self.failures = failures
        self.calls: list[float] = []

    async def ApplyConfig(  # noqa: N802
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the agent is restarting")
        return await super().ApplyConfig(request, context)


class GatedAdmin(AgentAdminServicer):
    """A real agent that holds each call until its gate opens: a slow agent, under the test's control."""

    def __init__(self, store: ConfigStore, identity: AgentIdentity, gate: asyncio.Event, arrived: list[str]) -> None:
        super().__init__(store, identity, lambda: True)
        self.gate = gate
        self.arrived = arrived
        self.identity = identity

    async def ApplyConfig(  # noqa: N802
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        self.arrived.append(self.identity.agent_id)
        await self.gate.wait()
        return await super().ApplyConfig(request, context)


class ConcurrencyMeter:
    """Counts the ApplyConfig calls in flight across many agents, and the most seen at once.

    Each call waits until ``limit`` calls are in flight together, or every
    expected call has started, so a push that respects the limit fills it (the
    maximum is then exactly the limit) and one that does not overshoots it.
    """

    def __init__(self, limit: int, expected: int) -> None:
        self.limit = limit
        self.expected = expected
        self.in_flight = 0
        self.started = 0
        self.max_in_flight = 0
        self._changed = asyncio.Condition()

    def servicer(self, store: ConfigStore, identity: AgentIdentity) -> admin_pb2_grpc.AgentAdminServicer:
        return _MeteredAdmin(store, identity, self)

    async def enter(self) -> None:
        async with self._changed:
            self.in_flight += 1
            self.started += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()
            await self._changed.wait_for(lambda: self.in_flight >= self.limit or self.started >= self.expected)

    async def leave(self) -> None:
        async with self._changed:
            self.in_flight -= 1


class _MeteredAdmin(AgentAdminServicer):
    def __init__(self, store: ConfigStore, identity: AgentIdentity, meter: ConcurrencyMeter) -> None:
        super().__init__(store, identity, lambda: True)
        self.meter = meter

    async def ApplyConfig(  # noqa: N802
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        await self.meter.enter()
        try:
            return await super().ApplyConfig(request, context)
        finally:
            await self.meter.leave()
