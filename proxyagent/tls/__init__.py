"""Workload identity and mutual TLS for the sidecar.

- ``spiffe``: SPIFFE ids, and the verified id a TLS peer presents.
- ``material``: the agent's key (in memory only), CSRs, proofs of possession and
  the ``ssl.SSLContext``s built from a certificate.
- ``certificates``: obtaining the certificate from the control plane, renewing
  it at half-life, re-issuing on a CA rotation, and telling listeners.
- ``inbound``: the inbound listener's accept loop, which tells TLS from
  plaintext by the first byte and applies the peer authentication mode.
"""
