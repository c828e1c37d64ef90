"""Pushing snapshots to many agents at once over gRPC ``AgentAdmin.ApplyConfig``.

- Bounded: at most ``parallelism`` calls are in flight (an ``asyncio.Semaphore``,
  held for one attempt, not while an agent waits out its backoff).
- Retried: transport failures (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ...) are
  tried again, up to ``RetryPolicy.attempts`` in all, after an exponential
  backoff with jitter. An agent's answer is final, a rejection included: the
  same snapshot would be rejected again.
- Pre-serialized: the caller serializes each distinct snapshot once
  (``serialize_once``) and the bytes go out through a generic unary-unary call,
  so a thousand agents sharing one snapshot cost one serialization.
- Channels outlive a rollout: a ``Pusher`` keeps one event loop per process on a
  daemon thread, and its ``ChannelPool`` keeps a channel per agent address, so
  the next rollout is one RPC per agent over an HTTP/2 connection already open.
  A channel whose call failed in transport is dropped, so the retry (or the
  next rollout) connects afresh instead of waiting out gRPC's reconnect backoff.

Nothing here touches the database: ``tasks.py`` chooses the targets and
records what comes back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from meshui.rollout.models import PushOutcome
from proxyagent.protocol.v1 import admin_pb2, snapshot_pb2

logger = logging.getLogger(__name__)
T = TypeVar("T")

APPLY_CONFIG = "/mesh.v1.AgentAdmin/ApplyConfig"
# Failures of the transport, not answers of the agent: another attempt may get through.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
DETAIL_MAX = 500  # ConfigPush.detail

ApplyCall = grpc.aio.UnaryUnaryMultiCallable[bytes, admin_pb2.ApplyConfigResponse]


@dataclass(frozen=True, slots=True)
class PushTarget:
    agent_pk: int
    address: str
    # A serialized ``Snapshot``: the same bytes object for every agent that gets the same snapshot.
    payload: bytes
    # For an agent whose AgentAdmin takes only mutual TLS: the DNS name its certificate must carry
    # (derived from its SPIFFE id). None: plaintext.
    tls_name: str | None = None


@dataclass(frozen=True, slots=True)
class PushResult:
    agent_pk: int
    outcome: PushOutcome
    # The version the agent says it holds after the call; None when it could not be asked.
    applied_version: int | None
    # The agent's reason for a rejection, or the transport error.
    detail: str
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failed attempt in a row.

        Doubling from ``base_delay_s`` up to ``max_delay_s``, with "equal
        jitter": a uniform draw from the upper half, so agents that failed
        together do not retry in lockstep, yet each wait is at least half the
        exponential step.
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))
        return rng.uniform(ceiling / 2, ceiling)


def serialize_once(snapshots: Mapping[int, snapshot_pb2.Snapshot]) -> dict[int, bytes]:
    """Each agent's snapshot as bytes, serializing each distinct snapshot once.

    Agents given the same snapshot object share one serialization; snapshots
    that are equal but distinct objects serialize to equal bytes
    (deterministically, map fields included) and then share one bytes object.
    """
    by_object: dict[int, bytes] = {}
    by_bytes: dict[bytes, bytes] = {}
    payloads: dict[int, bytes] = {}
    for agent_pk, snapshot in snapshots.items():
        payload = by_object.get(id(snapshot))
        if payload is None:
            serialized = snapshot.SerializeToString(deterministic=True)
            payload = by_object[id(snapshot)] = by_bytes.setdefault(serialized, serialized)
        payloads[agent_pk] = payload
    return payloads


# (key PEM, certificate chain PEM, trust bundle PEM) of the control plane's own identity, and a
# generation that changes when it is renewed.
ClientIdentity = tuple[int, bytes, bytes, bytes]
ChannelKey = tuple[str, str | None, int]


class ChannelPool:
    """gRPC channels to agents by address, kept between rollouts; at most ``max_channels``, least recently used go.

    Channels to agents that take only mutual TLS present the control plane's certificate
    (``client_identity``) and verify the agent by the DNS name its SPIFFE id gives; such a
    channel is keyed by the identity's generation too, so a renewed certificate opens new ones.
    Use it from one event loop only (the loop its channels belong to).
    """

    def __init__(
        self,
        max_channels: int = 4096,
        close_grace_s: float = 5.0,
        client_identity: Callable[[], ClientIdentity] | None = None,
    ) -> None:
        self._max_channels = max(1, max_channels)
        self._close_grace_s = close_grace_s
        self.client_identity = client_identity
        self._channels: OrderedDict[ChannelKey, tuple[grpc.aio.Channel, ApplyCall]] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._channels)

    def _open(self, address: str, tls_name: str | None) -> tuple[ChannelKey, grpc.aio.Channel]:
        if tls_name is None:
            return (address, None, 0), grpc.aio.insecure_channel(address)
        if self.client_identity is None:
            raise RuntimeError("this agent takes only mutual TLS, and the control plane has no client identity here")
        generation, key, chain, bundle = self.client_identity()
        credentials = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=key, certificate_chain=chain)
        channel = grpc.aio.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", tls_name)])
        return (address, tls_name, generation), channel

    def _key(self, address: str, tls_name: str | None) -> ChannelKey:
        if tls_name is None or self.client_identity is None:
            return (address, tls_name, 0)
        return (address, tls_name, self.client_identity()[0])

    def apply_call(self, address: str, tls_name: str | None = None) -> ApplyCall:
        key = self._key(address, tls_name)
        entry = self._channels.get(key)
        if entry is not None:
            self._channels.move_to_end(key)
            return entry[1]
        key, channel = self._open(address, tls_name)
        # No request serializer: the payload is already a serialized Snapshot.
        call: ApplyCall = channel.unary_unary(
            APPLY_CONFIG, response_deserializer=admin_pb2.ApplyConfigResponse.FromString
        )
        self._channels[key] = (channel, call)
        while len(self._channels) > self._max_channels:
            _, (oldest, _) = self._channels.popitem(last=False)
            self._close_later(oldest)
        return call

    def discard(self, address: str, tls_name: str | None = None) -> None:
        """Forget the channel to ``address`` (after a transport failure): the next call connects afresh."""
        entry = self._channels.pop(self._key(address, tls_name), None)
        if entry is not None:
            self._close_later(entry[0])

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        # A grace period, not an immediate close: a call still in flight on it may finish.
        task = asyncio.get_running_loop().create_task(channel.close(grace=self._close_grace_s))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        channels = [channel for channel, _ in self._channels.values()]
        self._channels.clear()
        await asyncio.gather(*(channel.close(grace=None) for channel in channels), *self._closing)


def _describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details() or ''}".strip()[:DETAIL_MAX]


def result_from_reply(agent_pk: int, version: int, reply: admin_pb2.ApplyConfigResponse, attempts: int) -> PushResult:
    """What an agent's answer to a push of ``version`` means."""
    if reply.accepted:
        return PushResult(agent_pk, PushOutcome.ACKED, reply.applied_version, "", attempts)
    if reply.applied_version >= version:
        # It refused because it already holds this version's successor (a newer push got there first):
        # it has reached this version, which is all this push was for.
        detail = f"already holds version {reply.applied_version}"
        return PushResult(agent_pk, PushOutcome.ACKED, reply.applied_version, detail, attempts)
    return PushResult(agent_pk, PushOutcome.REJECTED, reply.applied_version, reply.reason[:DETAIL_MAX], attempts)


async def push_one(
    target: PushTarget,
    version: int,
    *,
    pool: ChannelPool,
    semaphore: asyncio.Semaphore,
    deadline_s: float,
    retry: RetryPolicy,
    rng: random.Random,
) -> PushResult:
    """Push to one agent until it answers, a failure is not worth retrying, or the attempts run out."""
    attempt = 0
    while True:
        attempt += 1
        async with semaphore:
            try:
                reply = await pool.apply_call(target.address, target.tls_name)(target.payload, timeout=deadline_s)
            except grpc.aio.AioRpcError as exc:
                error = exc
            except Exception as exc:  # one agent's odd failure must not sink the rollout to the others
                logger.exception("push to agent #%s at %s failed", target.agent_pk, target.address)
                pool.discard(target.address, target.tls_name)
                detail = f"{type(exc).__name__}: {exc}"[:DETAIL_MAX]
                return PushResult(target.agent_pk, PushOutcome.UNREACHABLE, None, detail, attempt)
            else:
                return result_from_reply(target.agent_pk, version, reply, attempt)
        code = error.code()
        if code in RETRYABLE_CODES:
            pool.discard(target.address, target.tls_name)
        if code not in RETRYABLE_CODES or attempt >= retry.attempts:
            return PushResult(target.agent_pk, PushOutcome.UNREACHABLE, None, _describe(error), attempt)
        delay = retry.backoff(attempt, rng)
        logger.info(
            "push of v%s to agent #%s: %s, attempt %d of %d, again in %.2f s",
            version, target.agent_pk, code.name, attempt, retry.attempts, delay,
        )  # fmt: skip
        await asyncio.sleep(delay)


async def push_all(
    targets: Sequence[PushTarget],
    version: int,
    *,
    pool: ChannelPool,
    parallelism: int,
    deadline_s: float,
    retry: RetryPolicy,
    on_result: Callable[[PushResult], object] | None = None,
    rng: random.Random | None = None,
) -> list[PushResult]:
    """Push to every target, at most ``parallelism`` at a time; ``on_result`` hears each final outcome as it comes."""
    semaphore = asyncio.Semaphore(max(1, parallelism))
    jitter = rng or random.Random()  # noqa: S311 - jitter, not secrets

    async def one(target: PushTarget) -> PushResult:
        result = await push_one(
            target, version, pool=pool, semaphore=semaphore, deadline_s=deadline_s, retry=retry, rng=jitter
        )
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(target) for target in targets)))


class Pusher:
    """A daemon thread running this process's push event loop, and the channel pool that lives in it."""

    def __init__(self, max_channels: int = 4096, client_identity: Callable[[], ClientIdentity] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = ChannelPool(max_channels, client_identity=client_identity)
        self._thread = threading.Thread(target=self.loop.run_forever, name="meshui-pusher", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, timeout: float = 10.0) -> None:
        if not self.loop.is_running():
            return
        try:
            self.submit(self.pool.close()).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self.loop.close()


_pusher: Pusher | None = None
_pusher_pid = 0
_pusher_lock = threading.Lock()


def get_pusher(max_channels: int = 4096, client_identity: Callable[[], ClientIdentity] | None = None) -> Pusher:
    """This process's pusher, started on first use (after a fork, afresh: threads and channels do not survive one)."""
    global _pusher, _pusher_pid
    with _pusher_lock:
        if _pusher is None or _pusher_pid != os.getpid():
            _pusher, _pusher_pid = Pusher(max_channels, client_identity), os.getpid()
        elif client_identity is not None:
            _pusher.pool.client_identity = client_identity
        return _pusher


def close_pusher() -> None:
    """Close this process's channels and stop its push loop (a later push starts a new one)."""
    global _pusher
    with _pusher_lock:
        pusher, _pusher = _pusher, None
    if pusher is not None and _pusher_pid == os.getpid():
        pusher.close()
