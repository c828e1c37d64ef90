"""gRPC channels from the agent to the control plane (MeshControl, OTLP): plaintext, or TLS verified
against roots that may change (a CA rotation), re-opened when they do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc

# In-flight calls on a replaced channel get this long to finish before it closes.
_CLOSE_GRACE_S = 10.0


class ChannelSource:
    """One lazily opened channel to ``target``; with ``roots``, TLS trusting the PEM roots it returns."""

    def __init__(self, target: str, roots: Callable[[], bytes] | None = None) -> None:
        self.target = target
        self._roots = roots
        self._channel: grpc.aio.Channel | None = None
        self._channel_roots = b""
        # Replaced channels closing with a grace period, kept so their tasks are not garbage collected.
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def tls(self) -> bool:
        return self._roots is not None

    def channel(self) -> grpc.aio.Channel:
        roots = self._roots() if self._roots is not None else b""
        channel = self._channel
        if channel is not None and roots == self._channel_roots:
            return channel
        if channel is not None:
            task = asyncio.get_running_loop().create_task(channel.close(_CLOSE_GRACE_S))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self._roots is None:
            channel = grpc.aio.insecure_channel(self.target)
        else:
            channel = grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials(root_certificates=roots))
        self._channel, self._channel_roots = channel, roots
        return channel

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        for task in list(self._closing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
