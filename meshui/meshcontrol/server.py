"""The control plane's gRPC server: MeshControl and OTLP's TraceService and MetricsService, the sweep
that expires silent agents, and the span ingest writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import grpc
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from meshui.catalog.actions import do_expire_silent_agents
from meshui.identity.control_identity import ControlPlaneIdentity
from meshui.meshcontrol.servicer import MeshControlServicer
from meshui.telemetry.forwarding import OtlpForwarder
from meshui.telemetry.ingest import SpanIngest
from meshui.telemetry.live import LivePublisher
from meshui.telemetry.metrics_writer import MetricsWriter
from meshui.telemetry.receiver import MetricsReceiver, TraceReceiver
from meshui.telemetry.writer import stop_writer
from proxyagent.protocol.v1 import control_pb2_grpc

logger = logging.getLogger(__name__)


class MeshControlServer:
    """Owns the grpc.aio server and the expiry sweep, and stops both in order."""

    def __init__(self, bind: str) -> None:
        self.bind = bind
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        # Kept so the tasks are not garbage collected while they run.
        self._sweeper: asyncio.Task[None] | None = None
        self._ingest_task: asyncio.Task[None] | None = None
        self.ingest: SpanIngest | None = None
        self.traces: TraceReceiver | None = None
        self.metrics: MetricsReceiver | None = None
        self.metrics_writer: MetricsWriter | None = None
        self.forwarder: OtlpForwarder | None = None
        self._forward_task: asyncio.Task[None] | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        self.identity: ControlPlaneIdentity | None = None

    async def start(self) -> int:
        # Created here, not in __init__: a grpc.aio server belongs to the loop it is created on.
        # A request over the limit is refused by gRPC itself (RESOURCE_EXHAUSTED) before it is decoded.
        limit = settings.MESH_OTLP_MAX_MESSAGE_BYTES
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit)])
        control_pb2_grpc.add_MeshControlServicer_to_server(MeshControlServicer(), self._server)
        self.ingest = SpanIngest(
            max_pending_spans=settings.MESH_SPAN_INGEST_MAX_PENDING,
            batch_spans=settings.MESH_SPAN_INGEST_BATCH,
            writers=settings.MESH_SPAN_INGEST_WRITERS if connection.vendor == "postgresql" else 1,
        )
        target = settings.MESH_OTLP_FORWARD_ENDPOINT
        self.forwarder = OtlpForwarder(target) if target else None
        self.traces = TraceReceiver(self.ingest, self.forwarder)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self.traces, self._server)  # type: ignore[no-untyped-call]
        self.metrics_writer = MetricsWriter(
            max_pending_keys=settings.MESH_METRICS_MAX_PENDING_SERIES, publisher=LivePublisher()
        )
        self.metrics = MetricsReceiver(self.metrics_writer, self.forwarder)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self.metrics, self._server)  # type: ignore[no-untyped-call]
        if settings.MESH_GRPC_TLS:
            ttl = timedelta(hours=settings.MESH_CERT_TTL_HOURS)
            self.identity = await asyncio.to_thread(ControlPlaneIdentity, settings.MESH_GRPC_TLS_HOSTS, ttl)
            self.port = self._server.add_secure_port(self.bind, self.identity.server_credentials())
        else:
            self.port = self._server.add_insecure_port(self.bind)
        if self.port == 0:
            raise OSError(f"cannot bind the mesh control gRPC server to {self.bind}")
        await self._server.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="expire-silent-agents")
        self._ingest_task = asyncio.create_task(self.ingest.run(), name="span-ingest")
        self._metrics_task = asyncio.create_task(self.metrics_writer.run(), name="metrics-writer")
        if self.forwarder is not None:
            self._forward_task = asyncio.create_task(self.forwarder.run(), name="otlp-forwarder")
        logger.info(
            "mesh control gRPC listening on %s (port %s, %s)",
            self.bind,
            self.port,
            "TLS" if self.identity else "plaintext",
        )
        return self.port

    async def _sweep_forever(self) -> None:
        interval = settings.MESH_HEARTBEAT_INTERVAL_SECONDS
        allowed = timedelta(seconds=interval * settings.MESH_MISSED_HEARTBEATS)
        while True:
            await asyncio.sleep(interval)
            try:
                await database_sync_to_async(do_expire_silent_agents)(timezone.now(), allowed)
            except Exception:  # one failed sweep (database restarting) must not stop the next
                logger.exception("expiring silent agents failed")

    async def stop(self, grace: float = 5.0) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.stop(grace)
        if self.ingest is not None:
            await self.ingest.close(self._ingest_task)
        if self.metrics_writer is not None:
            await self.metrics_writer.close(self._metrics_task)
        if self.forwarder is not None:
            await stop_writer(self._forward_task, self.forwarder.stop)
