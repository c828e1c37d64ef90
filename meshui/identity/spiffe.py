"""SPIFFE ids of workloads: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRUST_DOMAIN = r"[a-z0-9._-]+"
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
_PATTERN = re.compile(rf"\Aspiffe://({_TRUST_DOMAIN})/ns/({_DNS_LABEL})/sa/({_SUBDOMAIN})\Z")


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def dns_name(self) -> str:
        """The DNS name a certificate also carries for this identity: ``<sa>.<namespace>.<trust domain>``.

        gRPC verifies a peer by DNS name only; the control plane dials agents by address and
        checks this name, which the CA derives from the SPIFFE id and never takes from a CSR.
        """
        return f"{self.service_account}.{self.namespace}.{self.trust_domain}"

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """The id in ``uri``; ``ValueError`` unless it is exactly a workload id of the shape above."""
        match = _PATTERN.match(uri)
        if match is None:
            raise ValueError(f"not a workload SPIFFE id: {uri!r}")
        return cls(*match.groups())
