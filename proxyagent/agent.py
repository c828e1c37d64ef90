"""One sidecar: listeners, admin endpoints and the control-plane client, started and stopped in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from proxyagent.admin_grpc import AgentAdminServicer, bind_admin_server, serve_admin
from proxyagent.admin_http import AdminHttp
from proxyagent.balancer import Balancer
from proxyagent.compile import request_path_kind
from proxyagent.config_store import ConfigStore
from proxyagent.control_client import ControlPlaneClient
from proxyagent.http import native_relay
from proxyagent.http.downstream import DownstreamConnection
from proxyagent.http.proxy import HttpProxy, ProxySettings
from proxyagent.http.upstream import ConnectionPool
from proxyagent.identity import AgentIdentity
from proxyagent.metric_export import MetricExporter
from proxyagent.metrics import MeshMetrics
from proxyagent.routers import InboundRouter, OutboundRouter
from proxyagent.telemetry import SpanExporter

logger = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    service: str
    namespace: str
    app_port: int
    version: str = "v1"
    workload: str = ""
    service_account: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    app_host: str = "127.0.0.1"
    outbound_port: int = 15001
    inbound_port: int = 15006
    admin_port: int = 15000
    admin_http_port: int = 15020
    control_plane: str = "127.0.0.1:15010"
    request_timeout_s: float = 15.0
    drain_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    trace_sampling: float = 1.0
    # Where spans and metrics go (OTLP/gRPC); None means the control plane, "" turns export off.
    otlp_endpoint: str | None = None
    metrics_interval_s: float = 1.0
    # Serve plain exchanges with the C relay where it was built (ADR 013); off: the Python path serves all.
    native_relay: bool = True

    @property
    def workload_name(self) -> str:
        return self.workload or f"{self.service}-{self.version}"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = ConfigStore()
        self.metrics = MeshMetrics()
        self.store.on_change(lambda table: self.metrics.config_version.set(table.version))
        self.store.on_reject(lambda reason: self.metrics.config_rejected.inc())
        self.balancer = Balancer()
        self.identity: AgentIdentity | None = None
        self.client: ControlPlaneClient | None = None
        self.outbound: HttpProxy | None = None
        self.inbound: HttpProxy | None = None
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._pools: list[ConnectionPool] = []
        self._relays: list[native_relay.NativeRelay] = []
        self._grpc: grpc.aio.Server | None = None
        # Kept so the task is not garbage collected while it runs.
        self._control_task: asyncio.Task[None] | None = None
        self._inbound_factory: Callable[[], asyncio.Protocol] | None = None
        self.spans: SpanExporter | None = None
        self._span_task: asyncio.Task[None] | None = None
        self.metric_export: MetricExporter | None = None
        self._metric_task: asyncio.Task[None] | None = None

    def ready(self) -> bool:
        registered = self.client is None or self.client.registered
        return registered and self.store.has_config

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        inbound_server = await loop.create_server(self._inbound_connection, cfg.host, cfg.inbound_port)
        self._servers.append(inbound_server)
        self.ports["inbound"] = inbound_server.sockets[0].getsockname()[1]
        # Bound before the identity exists, because the identity carries the port (port 0 picks one).
        self._grpc, self.ports["admin"] = bind_admin_server(f"{cfg.host}:{cfg.admin_port}")

        self.identity = AgentIdentity(
            service=cfg.service,
            namespace=cfg.namespace,
            workload=cfg.workload_name,
            address=cfg.host,
            inbound_port=self.ports["inbound"],
            admin_port=self.ports["admin"],
            service_account=cfg.service_account,
            labels={"version": cfg.version, **cfg.labels},
        )
        # Without a control plane (static mode) config arrives only through AgentAdmin.ApplyConfig.
        self.client = ControlPlaneClient(cfg.control_plane, self.identity, self.store) if cfg.control_plane else None
        client = self.client
        await serve_admin(
            self._grpc, AgentAdminServicer(self.store, self.identity, lambda: client is None or client.registered)
        )

        settings = ProxySettings(
            agent_name=self.identity.agent_id, trace_sampling=cfg.trace_sampling, idle_timeout_s=cfg.idle_timeout_s
        )
        otlp = cfg.control_plane if cfg.otlp_endpoint is None else cfg.otlp_endpoint
        if otlp:
            resource = {
                "service.name": cfg.service,
                "service.namespace": cfg.namespace,
                "service.version": cfg.version,
                "mesh.workload": cfg.workload_name,
                "mesh.agent.id": self.identity.agent_id,
            }
            self.spans = SpanExporter(otlp, resource)
            self._span_task = asyncio.create_task(self.spans.run(), name="span-export")
            self.metric_export = MetricExporter(otlp, resource, self.metrics, interval_s=cfg.metrics_interval_s)
            self._metric_task = asyncio.create_task(self.metric_export.run(), name="metric-export")
        outbound_pool, inbound_pool = ConnectionPool(), ConnectionPool()
        self._pools = [outbound_pool, inbound_pool]
        self.outbound = HttpProxy(
            OutboundRouter(self.identity, self.store, self.balancer, cfg.request_timeout_s, self.metrics),
            outbound_pool,
            self.metrics,
            settings,
            self.spans,
        )
        self.inbound = HttpProxy(
            InboundRouter(self.identity, cfg.app_host, cfg.app_port, cfg.request_timeout_s),
            inbound_pool,
            self.metrics,
            settings,
            self.spans,
        )
        self._inbound_factory = self._protocol_factory(self.inbound)
        outbound_server = await loop.create_server(
            self._protocol_factory(self.outbound), "127.0.0.1", cfg.outbound_port
        )
        self._servers.append(outbound_server)
        self.ports["outbound"] = outbound_server.sockets[0].getsockname()[1]
        admin_http = AdminHttp(self.metrics, self.ready)
        admin_http_server = await asyncio.start_server(admin_http.handle_connection, "127.0.0.1", cfg.admin_http_port)
        self._servers.append(admin_http_server)
        self.ports["admin_http"] = admin_http_server.sockets[0].getsockname()[1]
        if self.client is not None:
            self._control_task = asyncio.create_task(self.client.run(), name="control-plane-client")
        logger.info(
            "agent %s up: ports %s, request path %s, native relay %s",
            self.identity.agent_id,
            self.ports,
            request_path_kind(),
            "on" if self._relays else "off" if native_relay.AVAILABLE else "not built",
        )

    def _protocol_factory(self, proxy: HttpProxy) -> Callable[[], asyncio.Protocol]:
        if self.config.native_relay and native_relay.AVAILABLE:
            relay = native_relay.NativeRelay(proxy)
            self._relays.append(relay)
            return relay.protocol
        return lambda: DownstreamConnection(proxy)

    def _inbound_connection(self) -> asyncio.Protocol:
        # The inbound listener opens before the proxy behind it exists (its port is in the identity).
        if self._inbound_factory is None:
            raise ConnectionRefusedError("the agent is still starting")
        return self._inbound_factory()

    async def stop(self) -> None:
        """Stop accepting, leave the endpoint sets, let in-flight requests finish (with a deadline), then close."""
        for server in self._servers:
            server.close()
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._control_task
        if self.client is not None:
            await self.client.deregister()
            await self.client.close()
        for proxy in (self.inbound, self.outbound):
            if proxy is not None:
                await proxy.drain(self.config.drain_timeout_s)
        for pool in self._pools:
            pool.close()
        for relay in self._relays:
            relay.close()
        for task in (self._span_task, self._metric_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.metric_export is not None:
            await self.metric_export.close()
        if self.spans is not None:
            await self.spans.close()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    async def run_until_signalled(self) -> None:
        """The agent as its own process: start, serve until SIGINT or SIGTERM, stop."""
        await self.start()
        # Everything imported and built so far lives as long as the process: keeping it out of the
        # collector's generations makes each full collection scan only what requests left behind,
        # instead of pausing every request for the whole heap.
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logger.info("stopping: draining in-flight requests for up to %.0f s", self.config.drain_timeout_s)
        await self.stop()
