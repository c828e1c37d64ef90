"""Pushing snapshots to agents over gRPC ``AgentAdmin.ApplyConfig``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from meshui.catalog.models import Agent, AgentStatus
from meshui.rollout.models import ConfigPush, MeshVersion, PushOutcome
from meshui.rollout.snapshots import build_snapshot
from proxyagent.protocol.v1 import admin_pb2_grpc, snapshot_pb2

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    agent_pk: int
    outcome: PushOutcome
    applied_version: int | None
    detail: str


async def _push_one(agent_pk: int, address: str, snapshot: snapshot_pb2.Snapshot, deadline_s: float) -> PushResult:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await admin_pb2_grpc.AgentAdminStub(channel).ApplyConfig(snapshot, timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        return PushResult(agent_pk, PushOutcome.UNREACHABLE, None, f"{exc.code().name}: {exc.details()}"[:500])
    if reply.accepted:
        return PushResult(agent_pk, PushOutcome.ACKED, reply.applied_version, "")
    return PushResult(agent_pk, PushOutcome.REJECTED, reply.applied_version, reply.reason[:500])


async def _push_all(
    targets: list[tuple[int, str]], snapshot: snapshot_pb2.Snapshot, deadline_s: float
) -> list[PushResult]:
    return list(await asyncio.gather(*(_push_one(pk, address, snapshot, deadline_s) for pk, address in targets)))


@shared_task(name="meshui.rollout.push_snapshots")
def push_snapshots(version: int) -> dict[str, int]:
    """Push the current snapshot to every connected agent that is behind it, concurrently.

    ``version`` is the version that triggered the push (kept in the task for
    the logs); a newer one may exist by the time this runs, and is what gets pushed. Agents that miss a push
    catch up through their next heartbeat.
    """
    # Always the current version: a task queued before a database reset may carry a
    # number the counter has not reached again, and agents never accept going back.
    latest = MeshVersion.current()
    agents = list(
        Agent.objects.filter(status=AgentStatus.CONNECTED)
        .exclude(admin_address="")
        .exclude(config_version__gte=latest)
        .values_list("pk", "admin_address")
    )
    if not agents:
        return {}
    snapshot = build_snapshot(latest)
    results = asyncio.run(_push_all(agents, snapshot, float(settings.MESH_PUSH_TIMEOUT_SECONDS)))
    with transaction.atomic():
        ConfigPush.objects.bulk_create(
            ConfigPush(agent_id=r.agent_pk, version=latest, outcome=r.outcome, detail=r.detail) for r in results
        )
        for result in results:
            if result.applied_version is not None:
                # A slower push of an older version must not lower what a newer one recorded.
                Agent.objects.filter(
                    Q(config_version__isnull=True) | Q(config_version__lt=result.applied_version), pk=result.agent_pk
                ).update(config_version=result.applied_version)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        if result.outcome != PushOutcome.ACKED:
            logger.warning("push of v%s to agent #%s: %s %s", latest, result.agent_pk, result.outcome, result.detail)
    return counts
