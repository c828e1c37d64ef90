"""Pushes to agents whose AgentAdmin takes only mutual TLS from the control plane's identity."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
import pytest
from asgiref.sync import sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from meshui.catalog.models import Agent, Namespace
from meshui.identity import control_identity
from meshui.identity.control_identity import control_plane_spiffe_id
from meshui.identity.issuance import JoinTokenCredential, do_issue_certificate
from meshui.identity.models import JoinToken
from meshui.rollout.models import ConfigPush
from meshui.rollout.tasks import push_snapshots
from proxyagent.admin_grpc import AgentAdminServicer
from proxyagent.config_store import ConfigStore
from proxyagent.identity import AgentIdentity
from proxyagent.protocol.v1 import admin_pb2, admin_pb2_grpc, snapshot_pb2
from tests.identity.test_certificate_authority import csr_for
from tests.rollout.conftest import NAMESPACE, Context, Fleet, FleetAgent, bump_version

rollout_now = sync_to_async(push_snapshots, thread_sensitive=True)


@pytest.fixture(autouse=True)
def fresh_control_identity() -> Iterator[None]:
    # Each test has its own CA: the process's client identity must come from it.
    control_identity._client_identity = None
    yield
    control_identity._client_identity = None


class ControlPlaneOnly(AgentAdminServicer):
    """An agent's AgentAdmin that serves the control plane's identity only (checked from the verified chain)."""

    def __init__(self, store: ConfigStore, identity: AgentIdentity) -> None:
        super().__init__(store, identity, lambda: True)
        self.callers: list[str] = []

    async def ApplyConfig(  # noqa: N802 - gRPC method names are the contract's
        self, request: snapshot_pb2.Snapshot, context: Context
    ) -> admin_pb2.ApplyConfigResponse:
        [pem] = context.auth_context()["x509_pem_cert"]
        san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        [caller] = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        self.callers.append(caller)
        if caller != str(control_plane_spiffe_id()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{caller} may not configure this agent")
        return await super().ApplyConfig(request, context)


@sync_to_async
def workload_certificate(service_account: str) -> tuple[bytes, bytes, bytes]:
    """(key, chain, bundle) for an agent of ``service_account`` in the fleet's namespace, from the mesh's CA."""
    namespace, _ = Namespace.objects.get_or_create(name=NAMESPACE)
    _, token = JoinToken.issue(namespace, service_account, timezone.now() + dt.timedelta(hours=1))
    pem, key = csr_for([])
    issued = do_issue_certificate(pem, JoinTokenCredential(token))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, issued.chain_pem, issued.bundle_pem


async def serve_mtls(fleet: Fleet, agent: FleetAgent, service_account: str) -> None:
    key, chain, bundle = await workload_certificate(service_account)
    server = grpc.aio.server()
    admin_pb2_grpc.add_AgentAdminServicer_to_server(agent.servicer, server)
    server.add_secure_port(
        agent.address, grpc.ssl_server_credentials([(key, chain)], root_certificates=bundle, require_client_auth=True)
    )
    await server.start()
    agent.server = server
    await sync_to_async(Agent.objects.filter(pk=agent.pk).update)(admin_mtls=True)


async def test_the_push_presents_the_control_planes_identity_and_checks_the_agents(fleet: Fleet) -> None:
    agent = await fleet.start("app", servicer=ControlPlaneOnly, serving=False)
    await serve_mtls(fleet, agent, "default")
    version = await bump_version()
    assert await rollout_now(version) == {"acked": 1}
    assert agent.store.version == version
    assert isinstance(agent.servicer, ControlPlaneOnly)
    assert agent.servicer.callers == ["spiffe://cluster.local/ns/mesh-system/sa/meshui-control"]


async def test_an_agent_with_another_identity_is_not_sent_config(fleet: Fleet) -> None:
    agent = await fleet.start("app", servicer=ControlPlaneOnly, serving=False)
    # The catalog says the workload runs as "default"; this server presents "intruder".
    await serve_mtls(fleet, agent, "intruder")
    version = await bump_version()
    assert await rollout_now(version) == {"unreachable": 1}
    assert agent.store.version == 0
    assert isinstance(agent.servicer, ControlPlaneOnly)
    assert agent.servicer.callers == []
    detail = await sync_to_async(lambda: ConfigPush.objects.get(agent_id=agent.pk).detail)()
    assert "UNAVAILABLE" in detail


async def test_anyone_else_is_refused_by_the_agent(fleet: Fleet) -> None:
    agent = await fleet.start("app", servicer=ControlPlaneOnly, serving=False)
    await serve_mtls(fleet, agent, "default")
    key, chain, bundle = await workload_certificate("web")  # a workload of the mesh, not the control plane
    credentials = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=key, certificate_chain=chain)
    options = [("grpc.ssl_target_name_override", f"default.{NAMESPACE}.cluster.local")]
    async with grpc.aio.secure_channel(agent.address, credentials, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin_pb2_grpc.AgentAdminStub(channel).ApplyConfig(snapshot_pb2.Snapshot(version=99), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # And a client without any certificate does not get past the handshake.
    plain_tls = grpc.ssl_channel_credentials(root_certificates=bundle)
    async with grpc.aio.secure_channel(agent.address, plain_tls, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as no_certificate:
            await admin_pb2_grpc.AgentAdminStub(channel).ApplyConfig(snapshot_pb2.Snapshot(version=99), timeout=10)
    assert no_certificate.value.code() == grpc.StatusCode.UNAVAILABLE
    assert agent.store.version == 0
