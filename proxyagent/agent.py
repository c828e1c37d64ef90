"""One sidecar: listeners, admin endpoints and the control-plane client, started and stopped in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from proxyagent.inbound_policy import PeerAuthenticationMode
from proxyagent.metric_export import MetricExporter
from proxyagent.metrics import MeshMetrics
from proxyagent.routers import InboundRouter, OutboundRouter
from proxyagent.routing import RoutingTable
from proxyagent.telemetry import SpanExporter
from proxyagent.tls.admin import AdminCredentials
from proxyagent.tls.certificates import WorkloadCertificates
from proxyagent.tls.inbound import InboundAcceptor
from proxyagent.tls.material import CertificateError, parse_bundle
from proxyagent.tls.spiffe import TRUST_DOMAIN, control_plane_id, workload_id

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
    # Workload identity and mutual TLS. The join token proves the identity for the first certificate.
    join_token: str = field(default="", repr=False)
    # Cluster mode: the pod's projected service-account token (audience the control plane's), read at each join.
    kubernetes_token_file: str = ""
    # PEM roots to verify the control plane's TLS with (first contact); empty: plaintext to the control plane.
    trust_bundle: bytes = b""
    trust_domain: str = "cluster.local"
    # None: on when a join token is given.
    mtls: bool | None = None
    # The only client AgentAdmin accepts in mTLS mode; "": spiffe://<trust domain>/ns/mesh-system/sa/meshui-control.
    control_plane_identity: str = ""
    # Unix time, for when the certificate is due (tests inject one to renew early).
    certificate_clock: Callable[[], float] = time.time

    @property
    def workload_name(self) -> str:
        return self.workload or f"{self.service}-{self.version}"

    @property
    def mtls_enabled(self) -> bool:
        return bool(self.join_token or self.kubernetes_token_file) if self.mtls is None else self.mtls

    def check(self) -> None:
        """``ValueError`` saying what is missing for the identity settings to make sense."""
        if not TRUST_DOMAIN.match(self.trust_domain):
            raise ValueError(f"--trust-domain {self.trust_domain!r} is not a trust domain (lowercase, digits, .-_)")
        workload_id(self.trust_domain, self.namespace, self.service_account)
        if self.trust_bundle:
            try:
                parse_bundle(self.trust_bundle)
            except CertificateError as exc:
                raise ValueError(f"--trust-bundle: {exc}") from None
        if not self.mtls_enabled:
            return
        if not self.control_plane:
            raise ValueError("mutual TLS needs a control plane to issue the workload certificate (--control-plane)")
        if not self.join_token and not self.kubernetes_token_file:
            raise ValueError(
                "mutual TLS needs a join token (--join-token) or a Kubernetes service-account token "
                "(--kubernetes-token-file) for the first certificate"
            )
        if not self.trust_bundle:
            raise ValueError("mutual TLS needs --trust-bundle to verify the control plane before sending it a token")


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
        # Mutual TLS (None when off).
        self.certificates: WorkloadCertificates | None = None
        self._certificate_task: asyncio.Task[None] | None = None
        self.acceptor: InboundAcceptor | None = None
        # Set as stop() begins: connections whose protocol is made after that are refused.
        self._stopping = False
        self.admin: AgentAdminServicer | None = None
        self._strict_warned = False

    def _control_roots(self) -> bytes:
        """What the control plane's TLS is verified with: the --trust-bundle roots plus the mesh's bundle,
        which a CA rotation extends (the control plane's own certificate then comes from the new root)."""
        roots = self.config.trust_bundle
        current = self.certificates.current if self.certificates is not None else None
        bundle = current.bundle_pem if current is not None else self.store.table.trust_bundle
        return roots if not bundle or bundle == roots else roots.rstrip(b"\n") + b"\n" + bundle

    def _strict(self) -> bool:
        # In mTLS mode a sidecar that has not heard its namespace's mode yet refuses plaintext: failing open
        # would let anyone past a lockdown while the control plane is away at a restart.
        if self.certificates is not None and not self.store.has_config:
            return True
        return self.store.table.inbound.peer_authentication is PeerAuthenticationMode.STRICT

    def ready(self) -> bool:
        registered = self.client is None or self.client.registered
        return registered and self.store.has_config

    async def start(self) -> None:
        cfg = self.config
        cfg.check()
        loop = asyncio.get_running_loop()
        mtls = cfg.mtls_enabled
        inbound_socket: socket.socket | None = None
        if mtls:
            # Accepted by the agent itself, which tells TLS from plaintext by the first byte (proxyagent.tls.inbound).
            inbound_socket = _listening_socket(cfg.host, cfg.inbound_port)
            self.ports["inbound"] = inbound_socket.getsockname()[1]
            self.certificates = WorkloadCertificates(
                workload_id(cfg.trust_domain, cfg.namespace, cfg.service_account),
                join_token=cfg.join_token,
                kubernetes_token=_file_reader(cfg.kubernetes_token_file) if cfg.kubernetes_token_file else None,
                registry=self.metrics.registry,
                clock=cfg.certificate_clock,
            )
            certificates = self.certificates
            self.store.on_change(lambda table: certificates.bundle_changed(table.trust_bundle))
        else:
            inbound_server = await loop.create_server(self._inbound_connection, cfg.host, cfg.inbound_port)
            self._servers.append(inbound_server)
            self.ports["inbound"] = inbound_server.sockets[0].getsockname()[1]
        self.store.on_change(self._table_changed)
        # Bound before the identity exists, because the identity carries the port (port 0 picks one).
        admin_credentials = (
            AdminCredentials(self.certificates, cfg.trust_bundle).server_credentials()
            if self.certificates is not None
            else None
        )
        self._grpc, self.ports["admin"] = bind_admin_server(f"{cfg.host}:{cfg.admin_port}", admin_credentials)

        self.identity = AgentIdentity(
            service=cfg.service,
            namespace=cfg.namespace,
            workload=cfg.workload_name,
            address=cfg.host,
            inbound_port=self.ports["inbound"],
            admin_port=self.ports["admin"],
            service_account=cfg.service_account,
            labels={"version": cfg.version, **cfg.labels},
            admin_mtls=mtls,
        )
        if self.certificates is not None:
            self.certificates.agent_id = self.identity.agent_id
        tls_roots = self._control_roots if cfg.trust_bundle else None
        # Without a control plane (static mode) config arrives only through AgentAdmin.ApplyConfig.
        self.client = (
            ControlPlaneClient(
                cfg.control_plane, self.identity, self.store, tls_roots=tls_roots, certificates=self.certificates
            )
            if cfg.control_plane
            else None
        )
        client = self.client
        self.admin = AgentAdminServicer(
            self.store,
            self.identity,
            lambda: client is None or client.registered,
            allowed_client=(cfg.control_plane_identity or control_plane_id(cfg.trust_domain)) if mtls else None,
        )
        await serve_admin(self._grpc, self.admin)

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
            # To the control plane: over its TLS when it serves TLS; elsewhere as before.
            otlp_roots = tls_roots if otlp == cfg.control_plane else None
            self.spans = SpanExporter(otlp, resource, tls_roots=otlp_roots)
            self._span_task = asyncio.create_task(self.spans.run(), name="span-export")
            self.metric_export = MetricExporter(
                otlp, resource, self.metrics, interval_s=cfg.metrics_interval_s, tls_roots=otlp_roots
            )
            self._metric_task = asyncio.create_task(self.metric_export.run(), name="metric-export")
        # Out to other sidecars: mutual TLS in mTLS mode. In to the local app: plaintext on its host.
        outbound_pool = ConnectionPool(tls=self.certificates, metrics=self.metrics)
        inbound_pool = ConnectionPool()
        self._pools = [outbound_pool, inbound_pool]
        self.outbound = HttpProxy(
            OutboundRouter(self.identity, self.store, self.balancer, cfg.request_timeout_s, self.metrics, mtls=mtls),
            outbound_pool,
            self.metrics,
            settings,
            self.spans,
        )
        self.inbound = HttpProxy(
            InboundRouter(
                self.identity, cfg.app_host, cfg.app_port, cfg.request_timeout_s, self.store, fail_closed=mtls
            ),
            inbound_pool,
            self.metrics,
            settings,
            self.spans,
        )
        self._inbound_factory = self._protocol_factory(self.inbound)
        if inbound_socket is not None and self.certificates is not None:
            certificates = self.certificates
            self.acceptor = InboundAcceptor(
                inbound_socket,
                plaintext=self._inbound_factory,
                tls=self._inbound_factory,
                server_context=lambda: certificates.server_context,
                strict=self._strict,
                metrics=self.metrics,
            )
            self.acceptor.start()
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
            if self.certificates is not None:
                self._certificate_task = asyncio.create_task(
                    self.certificates.run(self.client.issue_certificate), name="workload-certificate"
                )
            self._control_task = asyncio.create_task(self.client.run(), name="control-plane-client")
        logger.info(
            "agent %s up: ports %s, request path %s, native relay %s, mutual TLS %s",
            self.identity.agent_id,
            self.ports,
            request_path_kind(),
            "on" if self._relays else "off" if native_relay.AVAILABLE else "not built",
            f"on as {self.certificates.spiffe_id}" if self.certificates is not None else "off",
        )

    def _table_changed(self, table: RoutingTable) -> None:
        strict = table.inbound.peer_authentication is PeerAuthenticationMode.STRICT
        if strict and self.certificates is None and not self._strict_warned:
            self._strict_warned = True
            logger.error(
                "peer authentication is STRICT but this agent has no mutual TLS (no join token): "
                "it refuses every inbound connection"
            )
        elif not strict:
            self._strict_warned = False

    def _protocol_factory(self, proxy: HttpProxy) -> Callable[[], asyncio.Protocol]:
        make: Callable[[], asyncio.Protocol]
        if self.config.native_relay and native_relay.AVAILABLE:
            relay = native_relay.NativeRelay(proxy)
            self._relays.append(relay)
            make = relay.protocol
        else:
            make = lambda: DownstreamConnection(proxy)  # noqa: E731

        def protocol() -> asyncio.Protocol:
            # asyncio makes the protocol of a connection accepted just before stop() closed the listener in a
            # task that may run after the drain closed every connection: refuse it rather than leave it open.
            return _Refused() if self._stopping else make()

        return protocol

    def _inbound_connection(self) -> asyncio.Protocol:
        # The inbound listener opens before the proxy behind it exists (its port is in the identity).
        if self._inbound_factory is None:
            raise ConnectionRefusedError("the agent is still starting")
        if self._strict():
            # Without mutual TLS nothing can satisfy STRICT: fail closed.
            self.metrics.plaintext_refused.inc()
            return _Refused()
        return self._inbound_factory()

    async def stop(self) -> None:
        """Stop accepting, leave the endpoint sets, let in-flight requests finish (with a deadline), then close."""
        self._stopping = True
        for server in self._servers:
            server.close()
        if self.acceptor is not None:
            await self.acceptor.close()
        for task in (self._control_task, self._certificate_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
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


class _Refused(asyncio.Protocol):
    """A connection refused as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (what ``loop.create_server`` would make), for the agent to accept on."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _file_reader(path: str) -> Callable[[], str]:
    """Reads ``path`` anew at each call (a token the kubelet keeps rewriting)."""
    return lambda: Path(path).read_text(encoding="utf-8")
