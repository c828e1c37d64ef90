"""``mesh.v1.AgentAdmin``, served by each agent for the control plane's pushes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from proxyagent.protocol.v1 import admin_pb2, admin_pb2_grpc, snapshot_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class AgentAdminServicer(admin_pb2_grpc.AgentAdminServicer):
    def __init__(self, store: ConfigStore, identity: AgentIdentity, is_registered: Callable[[], bool]) -> None:
        self._store = store
        self._identity = identity
        self._is_registered = is_registered

    async def ApplyConfig(  # noqa: N802 - gRPC method names are the contract's
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        accepted, reason = self._store.apply(request)
        return admin_pb2.ApplyConfigResponse(accepted=accepted, applied_version=self._store.version, reason=reason)

    async def GetStatus(  # noqa: N802
        self, request: admin_pb2.GetStatusRequest, context: Context
    ) -> admin_pb2.AgentStatus:
        registered = self._is_registered()
        return admin_pb2.AgentStatus(
            agent_id=self._identity.agent_id,
            applied_version=self._store.version,
            registered=registered,
            ready=registered and self._store.has_config,
            agent_version=self._identity.agent_version,
        )


def bind_admin_server(bind: str) -> tuple[grpc.aio.Server, int]:
    """A gRPC server bound to ``bind`` (``host:0`` picks a free port), not yet serving; returns it and its port."""
    server = grpc.aio.server()
    port = server.add_insecure_port(bind)
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
