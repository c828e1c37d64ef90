"""``mesh.v1.AgentAdmin``, served by each agent for the control plane's pushes.

In mTLS mode the server takes only TLS connections with a client certificate
chaining to the mesh's bundle (``proxyagent.tls.admin``), and every call is
refused (PERMISSION_DENIED) unless that certificate names the control plane.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from proxyagent.protocol.v1 import admin_pb2, admin_pb2_grpc, snapshot_pb2
from proxyagent.tls.admin import client_spiffe_id

Context = grpc.aio.ServicerContext[Any, Any]
logger = logging.getLogger(__name__)


class AgentAdminServicer(admin_pb2_grpc.AgentAdminServicer):
    def __init__(
        self,
        store: ConfigStore,
        identity: AgentIdentity,
        is_registered: Callable[[], bool],
        *,
        allowed_client: str | None = None,
    ) -> None:
        self._store = store
        self._identity = identity
        self._is_registered = is_registered
        # The one SPIFFE id allowed to call (the control plane's); None: any caller (plaintext mode).
        self._allowed_client = allowed_client
        self.refused_total = 0

    async def _authorize(self, context: Context) -> None:
        if self._allowed_client is None:
            return
        client = client_spiffe_id(context)
        if client != self._allowed_client:
            self.refused_total += 1
            logger.warning("AgentAdmin call from %s refused: only %s may configure this agent", client,
                           self._allowed_client)  # fmt: skip
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"only {self._allowed_client} may call AgentAdmin; the client presented {client or 'no SPIFFE id'}",
            )

    async def ApplyConfig(  # noqa: N802 - gRPC method names are the contract's
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        await self._authorize(context)
        accepted, reason = self._store.apply(request)
        return admin_pb2.ApplyConfigResponse(accepted=accepted, applied_version=self._store.version, reason=reason)

    async def GetStatus(  # noqa: N802
        self, request: admin_pb2.GetStatusRequest, context: Context
    ) -> admin_pb2.AgentStatus:
        await self._authorize(context)
        registered = self._is_registered()
        return admin_pb2.AgentStatus(
            agent_id=self._identity.agent_id,
            applied_version=self._store.version,
            registered=registered,
            ready=registered and self._store.has_config,
            agent_version=self._identity.agent_version,
        )


def bind_admin_server(bind: str, credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.aio.Server, int]:
    """A gRPC server bound to ``bind`` (``host:0`` picks a free port), not yet serving; returns it and its port.

    With ``credentials`` it takes only TLS (mTLS mode)."""
    server = grpc.aio.server()
    port = server.add_insecure_port(bind) if credentials is None else server.add_secure_port(bind, credentials)
    if port == 0:
        raise OSError(f"cannot bind the agent admin gRPC server to {bind}")
    return server, port


async def serve_admin(server: grpc.aio.Server, servicer: AgentAdminServicer) -> None:
    admin_pb2_grpc.add_AgentAdminServicer_to_server(servicer, server)
    await server.start()


async def start_admin_server(bind: str, servicer: AgentAdminServicer) -> tuple[grpc.aio.Server, int]:
    server, port = bind_admin_server(bind)
    await serve_admin(server, servicer)
    return server, port
