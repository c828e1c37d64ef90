"""Registration and heartbeats to the control plane, with backoff and catch-up.

The data plane never waits on this: when the control plane is unreachable the
agent keeps serving with the config it holds, and keeps trying to reconnect.

With ``tls_roots`` the channel is TLS, the control plane verified against
those roots (the ``--trust-bundle`` file plus the mesh's current bundle);
IssueCertificate, Register and Heartbeat all travel on it. With
``certificates`` the agent registers only once it holds a workload
certificate (``WorkloadCertificates.run`` obtains it through ``issue``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import grpc

from proxyagent.channels import ChannelSource
from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from proxyagent.protocol.v1 import control_pb2, control_pb2_grpc
from proxyagent.tls.certificates import WorkloadCertificates

logger = logging.getLogger(__name__)

_RPC_TIMEOUT_S = 5.0


class RegistrationRefused(RuntimeError):  # noqa: N818 - the control plane's verdict, named as such
    """The control plane refused our registration as invalid: retrying cannot help."""


class ControlPlaneClient:
    def __init__(
        self,
        target: str,
        identity: AgentIdentity,
        store: ConfigStore,
        *,
        healthy: Callable[[], bool] = lambda: True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        tls_roots: Callable[[], bytes] | None = None,
        certificates: WorkloadCertificates | None = None,
    ) -> None:
        self._target = target
        self._identity = identity
        self._store = store
        self._healthy = healthy
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self.registered = False
        self.heartbeat_interval_s = 5.0
        self.failures_total = 0
        self._channels = ChannelSource(target, tls_roots)
        self._certificates = certificates

    def _stub(self) -> control_pb2_grpc.MeshControlAsyncStub:
        return control_pb2_grpc.MeshControlStub(self._channels.channel())

    async def issue_certificate(
        self, request: control_pb2.IssueCertificateRequest
    ) -> control_pb2.IssueCertificateResponse:
        reply: control_pb2.IssueCertificateResponse = await self._stub().IssueCertificate(
            request, timeout=_RPC_TIMEOUT_S
        )
        return reply

    async def register(self) -> None:
        try:
            reply: control_pb2.RegisterResponse = await self._stub().Register(
                self._identity.register_request(), timeout=_RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise RegistrationRefused(exc.details() or "invalid registration") from exc
            raise
        if reply.heartbeat_interval_ms:
            self.heartbeat_interval_s = reply.heartbeat_interval_ms / 1000
        self._store.apply(reply.snapshot, new_epoch=True)
        self.registered = True
        logger.info("registered with %s as %s (config version %d)", self._target, reply.agent_id, self._store.version)

    async def heartbeat(self) -> None:
        request = control_pb2.HeartbeatRequest(
            agent_id=self._identity.agent_id, applied_version=self._store.version, healthy=self._healthy()
        )
        reply: control_pb2.HeartbeatResponse = await self._stub().Heartbeat(request, timeout=_RPC_TIMEOUT_S)
        if reply.reregister:
            logger.warning("control plane does not know this agent; registering again")
            self.registered = False
            return
        if reply.HasField("snapshot"):
            self._store.apply(reply.snapshot)

    async def run(self) -> None:
        """Register, then heartbeat forever; on errors back off (with jitter) and try again."""
        if self._certificates is not None:
            # Who this agent is must be proven before it says where it is.
            await self._certificates.ready.wait()
        backoff = self._backoff_initial_s
        while True:
            try:
                if self.registered:
                    await self.heartbeat()
                else:
                    await self.register()
            except RegistrationRefused as exc:
                # Retrying the same registration cannot help; keep serving, say why loudly.
                logger.error("the control plane refused this agent's registration: %s", exc)
                return
            except grpc.aio.AioRpcError as exc:
                self.failures_total += 1
                logger.warning("control plane %s: %s; retrying in %.1f s", self._target, exc.code().name, backoff)
                delay = backoff
                backoff = min(backoff * 2, self._backoff_max_s)
            else:
                backoff = self._backoff_initial_s
                delay = self.heartbeat_interval_s if self.registered else 0.0
            await asyncio.sleep(delay * random.uniform(0.8, 1.0) if delay else 0)  # noqa: S311 - jitter, not crypto

    async def deregister(self) -> None:
        """Best effort, on shutdown: the instance leaves endpoint sets now instead of after missed heartbeats."""
        if not self.registered:
            return
        try:
            await self._stub().Deregister(control_pb2.DeregisterRequest(agent_id=self._identity.agent_id), timeout=2.0)
            self.registered = False
        except grpc.aio.AioRpcError as exc:
            logger.warning("deregistration failed: %s", exc.code().name)

    async def close(self) -> None:
        await self._channels.close()
