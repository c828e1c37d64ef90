"""SPIFFE ids of workloads (``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``) and of TLS peers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TRUST_DOMAIN = r"[a-z0-9._-]+"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
WORKLOAD_ID = re.compile(rf"\Aspiffe://({_TRUST_DOMAIN})/ns/({_DNS_LABEL})/sa/({_SUBDOMAIN})\Z")
TRUST_DOMAIN = re.compile(rf"\A{_TRUST_DOMAIN}\Z")

# The control plane's own identity lives in this namespace under this service account (the control
# plane's MESH_CONTROL_NAMESPACE and MESH_CONTROL_SERVICE_ACCOUNT defaults).
CONTROL_PLANE_NAMESPACE = "mesh-system"
CONTROL_PLANE_SERVICE_ACCOUNT = "meshui-control"


def workload_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE id of a workload; ``ValueError`` when the parts do not make a valid one."""
    spiffe_id = f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
    if not WORKLOAD_ID.match(spiffe_id):
        raise ValueError(f"not a valid workload SPIFFE id: {spiffe_id!r}")
    return spiffe_id


def control_plane_id(trust_domain: str) -> str:
    return workload_id(trust_domain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT)


def trust_domain_of(spiffe_id: str) -> str:
    match = WORKLOAD_ID.match(spiffe_id)
    if match is None:
        raise ValueError(f"not a workload SPIFFE id: {spiffe_id!r}")
    return match.group(1)


def is_workload_id(value: str) -> bool:
    return WORKLOAD_ID.match(value) is not None


def peer_id(peercert: Mapping[str, Any] | None) -> str | None:
    """The one SPIFFE id in a verified peer certificate (``SSLObject.getpeercert()``), or ``None``.

    An X.509-SVID carries exactly one URI SAN, the SPIFFE id; a certificate with none, several, or one
    that is not a workload id names no workload.
    """
    if not peercert:
        return None
    uris = [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]
    if len(uris) != 1 or not isinstance(uris[0], str) or WORKLOAD_ID.match(uris[0]) is None:
        return None
    return uris[0]
