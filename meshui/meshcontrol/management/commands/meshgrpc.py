"""``manage.py meshgrpc``: run the control plane's gRPC server (MeshControl)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from meshui.meshcontrol.server import MeshControlServer


class Command(BaseCommand):
    help = "Serve mesh.v1.MeshControl for agents: registration, heartbeats, deregistration."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.MESH_GRPC_BIND, help="HOST:PORT (default %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._serve(options["bind"]))

    async def _serve(self, bind: str) -> None:
        server = MeshControlServer(bind)
        await server.start()
        self.stdout.write(f"mesh control gRPC serving on {bind}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
