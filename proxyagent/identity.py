"""Who this agent is, as it introduces itself to the control plane."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proxyagent import __version__
from proxyagent.protocol.v1 import control_pb2


@dataclass(frozen=True)
class AgentIdentity:
    service: str
    namespace: str
    workload: str
    address: str
    inbound_port: int
    admin_port: int
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    agent_version: str = __version__
    # AgentAdmin takes only mutual TLS from the control plane's identity (mTLS mode).
    admin_mtls: bool = False

    @property
    def agent_id(self) -> str:
        """Stable across restarts of the same instance, so a restart replaces rather than duplicates."""
        return f"{self.workload}.{self.namespace}@{self.address}:{self.inbound_port}"

    def register_request(self) -> control_pb2.RegisterRequest:
        return control_pb2.RegisterRequest(
            agent_id=self.agent_id,
            service=self.service,
            namespace=self.namespace,
            workload=self.workload,
            labels=dict(self.labels),
            service_account=self.service_account,
            address=self.address,
            inbound_port=self.inbound_port,
            admin_port=self.admin_port,
            agent_version=self.agent_version,
            admin_mtls=self.admin_mtls,
        )
