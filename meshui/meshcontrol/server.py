"""The control plane's gRPC server: MeshControl, plus the sweep that expires silent agents."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import grpc
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from meshui.catalog.actions import do_expire_silent_agents
from meshui.meshcontrol.servicer import MeshControlServicer
from proxyagent.protocol.v1 import control_pb2_grpc

logger = logging.getLogger(__name__)


class MeshControlServer:
    """Owns the grpc.aio server and the expiry sweep, and stops both in order."""

    def __init__(self, bind: str) -> None:
        self.bind = bind
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        # Kept so the task is not garbage collected while it runs.
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> int:
        # Created here, not in __init__: a grpc.aio server belongs to the loop it is created on.
        self._server = grpc.aio.server()
        control_pb2_grpc.add_MeshControlServicer_to_server(MeshControlServicer(), self._server)
        self.port = self._server.add_insecure_port(self.bind)
        if self.port == 0:
            raise OSError(f"cannot bind the mesh control gRPC server to {self.bind}")
        await self._server.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="expire-silent-agents")
        logger.info("mesh control gRPC listening on %s (port %s)", self.bind, self.port)
        return self.port

    async def _sweep_forever(self) -> None:
        interval = settings.MESH_HEARTBEAT_INTERVAL_SECONDS
        allowed = timedelta(seconds=interval * settings.MESH_MISSED_HEARTBEATS)
        while True:
            await asyncio.sleep(interval)
            try:
                await sync_to_async(do_expire_silent_agents)(timezone.now(), allowed)
            except Exception:  # one failed sweep (database restarting) must not stop the next
                logger.exception("expiring silent agents failed")

    async def stop(self, grace: float = 5.0) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.stop(grace)
