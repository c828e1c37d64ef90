"""``mesh.v1.MeshControl``: the gRPC face of the catalog actions. Thin on purpose."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from channels.db import database_sync_to_async
from django.conf import settings

from meshui.catalog.actions import do_deregister_agent, do_record_heartbeat, do_register_agent
from meshui.catalog.registration import InvalidRegistration, Registration
from meshui.identity.authority import CsrRefused
from meshui.identity.issuance import (
    Credential,
    CredentialRefusedError,
    JoinTokenCredential,
    KubernetesCredential,
    RenewalCredential,
    do_issue_certificate,
)
from meshui.rollout.models import MeshVersion
from meshui.rollout.snapshots import build_agent_snapshot
from proxyagent.protocol.v1 import control_pb2, control_pb2_grpc, snapshot_pb2

logger = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]


def _current_snapshot(agent_id: str) -> snapshot_pb2.Snapshot:
    return build_agent_snapshot(MeshVersion.current(), agent_id)


class MeshControlServicer(control_pb2_grpc.MeshControlServicer):
    async def Register(  # noqa: N802 - gRPC method names are the contract's
        self, request: control_pb2.RegisterRequest, context: Context
    ) -> control_pb2.RegisterResponse:
        try:
            registration = Registration(
                agent_id=request.agent_id,
                service=request.service,
                namespace=request.namespace,
                workload=request.workload,
                address=request.address,
                inbound_port=request.inbound_port,
                admin_port=request.admin_port,
                agent_version=request.agent_version,
                service_account=request.service_account or "default",
                labels=dict(request.labels),
                admin_mtls=request.admin_mtls,
            )
        except InvalidRegistration as exc:
            logger.warning("registration refused: %s", exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        agent = await database_sync_to_async(do_register_agent)(registration)
        snapshot = await database_sync_to_async(_current_snapshot)(agent.agent_id)
        return control_pb2.RegisterResponse(
            agent_id=agent.agent_id,
            snapshot=snapshot,
            heartbeat_interval_ms=settings.MESH_HEARTBEAT_INTERVAL_SECONDS * 1000,
        )

    async def Heartbeat(  # noqa: N802
        self, request: control_pb2.HeartbeatRequest, context: Context
    ) -> control_pb2.HeartbeatResponse:
        result = await database_sync_to_async(do_record_heartbeat)(
            request.agent_id, request.applied_version, request.healthy
        )
        if not result.known or request.applied_version > result.latest_version:
            # Unknown, or ahead of us (our database went back in time): registering again resyncs both sides.
            return control_pb2.HeartbeatResponse(latest_version=result.latest_version, reregister=True)
        reply = control_pb2.HeartbeatResponse(latest_version=result.latest_version)
        if request.applied_version < result.latest_version:
            # The agent missed a push (or it is still in flight): hand it the snapshot now.
            reply.snapshot.CopyFrom(
                await database_sync_to_async(build_agent_snapshot)(result.latest_version, request.agent_id)
            )
        return reply

    async def Deregister(  # noqa: N802
        self, request: control_pb2.DeregisterRequest, context: Context
    ) -> control_pb2.DeregisterResponse:
        if not await database_sync_to_async(do_deregister_agent)(request.agent_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown agent {request.agent_id!r}")
        return control_pb2.DeregisterResponse()

    async def IssueCertificate(  # noqa: N802
        self, request: control_pb2.IssueCertificateRequest, context: Context
    ) -> control_pb2.IssueCertificateResponse:
        credential = _credential(request)
        if credential is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "prove the identity: a join token, a Kubernetes service-account token, or the current certificate",
            )
        try:
            issued = await database_sync_to_async(do_issue_certificate)(
                bytes(request.csr_pem), credential, agent_id=request.agent_id
            )
        except CsrRefused as exc:
            logger.warning("CSR from %r refused: %s", request.agent_id, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except CredentialRefusedError as exc:
            logger.warning("certificate for %r refused: %s", request.agent_id, exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        logger.info("issued %s to agent %r until %s", issued.spiffe_id, request.agent_id, issued.not_after)
        return control_pb2.IssueCertificateResponse(
            certificate_chain_pem=issued.chain_pem,
            trust_bundle_pem=issued.bundle_pem,
            spiffe_id=str(issued.spiffe_id),
            not_after_unix=int(issued.not_after.timestamp()),
        )


def _credential(request: control_pb2.IssueCertificateRequest) -> Credential | None:
    if request.join_token:
        return JoinTokenCredential(request.join_token)
    if request.current_certificate_chain_pem:
        return RenewalCredential(bytes(request.current_certificate_chain_pem), bytes(request.proof_of_possession))
    if request.kubernetes_token:
        return KubernetesCredential(request.kubernetes_token)
    return None
