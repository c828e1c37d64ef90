"""Rolling the current snapshot out to agents: the Celery task, and the record it keeps.

The network side (bounded, retried, pre-serialized pushes over reused
channels) is ``push.py``; this module decides whom to push to, writes each
agent's outcome as it arrives, in small batches (a ``ConfigPush`` row, and
``Agent.config_version`` raised, never lowered), and publishes progress to
the Channels group ``rollout`` after each batch commits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from meshui.catalog.models import Agent, AgentStatus
from meshui.identity.control_identity import control_plane_client_material
from meshui.identity.spiffe import SpiffeId
from meshui.rollout.models import ConfigPush, MeshVersion, PushOutcome
from meshui.rollout.progress import ROLLOUT_GROUP, RolloutProgress
from meshui.rollout.push import (
    ChannelPool,
    Pusher,
    PushResult,
    PushTarget,
    RetryPolicy,
    close_pusher,
    get_pusher,
    push_all,
    push_one,
    serialize_once,
)
from meshui.rollout.snapshots import build_agent_snapshots
from proxyagent.protocol.v1 import snapshot_pb2

logger = logging.getLogger(__name__)

# Outcomes are written (and published) once this many have gathered, or this long after the first of a batch.
RECORD_BATCH = 200
RECORD_INTERVAL_S = 0.1
_PUBLISH_TIMEOUT_S = 2.0


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.MESH_ROLLOUT_PUSH_ATTEMPTS,
        base_delay_s=settings.MESH_ROLLOUT_RETRY_BASE_SECONDS,
        max_delay_s=settings.MESH_ROLLOUT_RETRY_MAX_SECONDS,
    )


def _tls_name(namespace: str, service_account: str | None) -> str:
    """The DNS name an agent's certificate carries for its SPIFFE id: what the push verifies."""
    return SpiffeId(settings.MESH_TRUST_DOMAIN, namespace, service_account or "default").dns_name


async def _push_one(agent_pk: int, address: str, snapshot: snapshot_pb2.Snapshot, deadline_s: float) -> PushResult:
    """One push of one snapshot to one agent, one attempt, over a channel of its own."""
    pool = ChannelPool()
    try:
        return await push_one(
            PushTarget(agent_pk, address, snapshot.SerializeToString(deterministic=True)),
            snapshot.version,
            pool=pool,
            semaphore=asyncio.Semaphore(1),
            deadline_s=deadline_s,
            retry=RetryPolicy(attempts=1),
            rng=random.Random(),  # noqa: S311 - one attempt: never drawn from
        )
    finally:
        await pool.close()


def record_results(version: int, results: list[PushResult]) -> None:
    """One transaction: a ConfigPush row per result, and each agent's config version raised to what it holds."""
    with transaction.atomic():
        ConfigPush.objects.bulk_create(
            ConfigPush(agent_id=r.agent_pk, version=version, outcome=r.outcome, detail=r.detail, attempts=r.attempts)
            for r in results
        )
        by_version: defaultdict[int, list[int]] = defaultdict(list)
        for result in results:
            if result.applied_version is not None:
                by_version[result.applied_version].append(result.agent_pk)
        for applied, agent_pks in by_version.items():
            # A slower push of an older version must not lower what a newer one recorded.
            behind = Q(config_version__isnull=True) | Q(config_version__lt=applied)
            Agent.objects.filter(behind, pk__in=agent_pks).update(config_version=applied)


def _publisher(pusher: Pusher) -> Callable[[dict[str, Any]], None]:
    """Publish to the ``rollout`` group from the pusher's loop (its Redis connections outlive a rollout)."""
    layer = get_channel_layer()

    def publish(event: dict[str, Any]) -> None:
        if layer is None:
            return
        try:
            pusher.submit(layer.group_send(ROLLOUT_GROUP, event)).result(_PUBLISH_TIMEOUT_S)
        except Exception as exc:  # progress is for watching: the rollout goes on without it
            logger.warning("could not publish rollout progress: %s: %s", type(exc).__name__, exc)

    return publish


class _Outcomes:
    """Outcomes handed from the pusher's loop to the recording thread, in batches: few wake-ups, not one per agent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[PushResult] = []
        self._finished = False
        self.ready = threading.Event()

    def add(self, result: PushResult) -> None:
        with self._lock:
            self._results.append(result)
            if len(self._results) >= RECORD_BATCH:
                self.ready.set()

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self.ready.set()

    def take(self) -> tuple[list[PushResult], bool]:
        """What gathered so far, and whether the pushes are over."""
        with self._lock:
            taken, self._results = self._results, []
            self.ready.clear()
            return taken, self._finished


def run_rollout(
    version: int,
    targets: list[PushTarget],
    progress: RolloutProgress,
    *,
    pusher: Pusher | None = None,
    publish: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, int]:
    """Push to ``targets`` on the pusher's loop while this thread records outcomes and publishes progress."""
    pusher = pusher or get_pusher(settings.MESH_ROLLOUT_MAX_CHANNELS, control_plane_client_material)
    publish = publish or _publisher(pusher)
    outcomes = _Outcomes()
    publish(progress.event([]))
    future = pusher.submit(
        push_all(
            targets,
            version,
            pool=pusher.pool,
            parallelism=settings.MESH_ROLLOUT_PARALLELISM,
            deadline_s=float(settings.MESH_PUSH_TIMEOUT_SECONDS),
            retry=retry_policy(),
            on_result=outcomes.add,
        )
    )
    future.add_done_callback(lambda _: outcomes.finish())

    # Outcomes taken from the pushes but not yet committed; emptied as soon as they are.
    unrecorded: list[PushResult] = []

    def flush(*, done: bool = False, error: str = "") -> None:
        nonlocal unrecorded
        results = unrecorded
        if results:
            record_results(version, results)
        unrecorded = []
        rows = progress.add((r.agent_pk, r.outcome, r.applied_version, r.detail, r.attempts) for r in results)
        if rows or done:
            publish(progress.event(rows, done=done, error=error))
        for r in results:
            if r.outcome != PushOutcome.ACKED:
                logger.warning(
                    "push of v%s to agent #%s: %s after %d attempt(s) %s",
                    version, r.agent_pk, r.outcome, r.attempts, r.detail,
                )  # fmt: skip

    try:
        finished = False
        while not finished:
            # Wake for a full batch, the end, or the interval: outcomes are never older than that when written.
            outcomes.ready.wait(RECORD_INTERVAL_S)
            taken, finished = outcomes.take()
            unrecorded += taken
            if unrecorded and not finished:
                flush()
        future.result()  # an error of the engine itself surfaces here
    except BaseException as exc:  # a time limit or an error: keep what is known, stop the pushes, say so
        future.cancel()
        unrecorded += outcomes.take()[0]
        try:
            flush(done=True, error=f"{type(exc).__name__}: {exc}"[:500])
        except Exception:
            logger.exception("could not record the last outcomes of the rollout of v%s", version)
        raise
    flush(done=True)
    return {outcome: count for outcome, count in progress.counts.items() if outcome in PushOutcome.values and count}


@shared_task(name="meshui.rollout.push_snapshots", acks_late=True, reject_on_worker_lost=True)
def push_snapshots(version: int) -> dict[str, int]:
    """Push the current snapshot to every connected agent that is behind it; returns the outcomes counted.

    ``version`` is the version that triggered the push (kept for the logs); a
    newer one may exist by the time this runs, and is what gets pushed: a
    queued push never sends an old snapshot. Agents that miss it catch up
    through their next heartbeat.

    Acknowledged late and rejected when its worker is lost: a worker killed
    mid-rollout leaves the message to be delivered again, and the redelivered
    run pushes to the agents still behind (an agent takes the same version
    twice without harm, so the overlap is safe).
    """
    # Always the current version: a task queued before a database reset may carry a
    # number the counter has not reached again, and agents never accept going back.
    latest = MeshVersion.current()
    rows = list(
        Agent.objects.filter(status=AgentStatus.CONNECTED)
        .exclude(admin_address="")
        .exclude(config_version__gte=latest)
        .order_by("pk")
        .values_list(
            "pk", "agent_id", "namespace__name", "admin_address", "admin_mtls", "instance__workload__service_account"
        )
    )
    if not rows:
        return {}
    payloads = serialize_once(build_agent_snapshots(latest, [pk for pk, *_ in rows]))
    targets = [
        PushTarget(pk, address, payloads[pk], _tls_name(namespace, account) if mtls else None)
        for pk, _, namespace, address, mtls, account in rows
        if pk in payloads
    ]
    progress = RolloutProgress(
        latest, version, {pk: (agent_id, namespace) for pk, agent_id, namespace, *_ in rows if pk in payloads}
    )
    logger.info(
        "rolling out v%s to %d agents (%d distinct snapshots)",
        latest, len(targets), len({id(p) for p in payloads.values()}),
    )  # fmt: skip
    return run_rollout(latest, targets, progress)


@worker_process_shutdown.connect
def _close_channels(**_: Any) -> None:
    """A worker process going away closes its channels to the agents, rather than dropping them."""
    close_pusher()
