"""What importing the agent loads: cryptography and PyJWT only when used; never prometheus_client."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import proxyagent.agent
from types import ModuleType

def loaded(name):
    module = sys.modules.get(name)
    # A module LazyLoader has not executed yet is still of its placeholder type.
    return module is not None and type(module) is ModuleType

before = {name: loaded(name) for name in ("jwt", "cryptography.x509")}
from proxyagent.tls.material import new_key, make_csr
import cryptography.x509
csr = make_csr(new_key(), "spiffe://cluster.local/ns/shop/sa/web")
after = cryptography.x509.load_pem_x509_csr(csr).is_signature_valid
print(before["jwt"], before["cryptography.x509"], after)
"""


def test_the_agent_loads_cryptography_and_jwt_only_when_used() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]


def test_the_agent_does_not_load_prometheus_client() -> None:
    # Its exposition module alone brings http.server, wsgiref, urllib.request, email and the compressors:
    # about 3 MB of each sidecar's memory. The agent serves its metrics with proxyagent.metric_registry.
    probe = """
import sys, proxyagent.cli, proxyagent.agent
heavy = ("prometheus_client", "wsgiref", "email", "urllib.request", "http.server")
print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
