"""An agent without mTLS or end-user tokens does not load cryptography or PyJWT; using them loads them as usual."""

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
