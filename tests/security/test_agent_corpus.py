"""The corpus against a real ``reviews`` sidecar: its path cases as raw requests to the agent's inbound port, sent
as their callers (mutual TLS with a certificate of the mesh's CA, or plaintext), and client certificates that
must never be served.

One agent for the module, joined to a fake control plane (a CA of its own) that pushes the corpus's policy,
compiled as the control plane compiles it. Each case opens its own connection and writes its request line
itself, so the request target reaches the agent byte for byte as the corpus states it.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshui.identity.authority import Authority
from meshui.identity.spiffe import SpiffeId
from proxyagent.agent import Agent
from tests.mtls.conftest import MtlsMesh, mtls_mesh, tls_client_context
from tests.mtls.fake_control_plane import Credentials, FakeControlPlane, TestCa
from tests.mtls.test_workload_identity import _metric
from tests.security import corpus
from tests.waiting import until

TIMEOUT_S = 10.0
REFUSED = "mesh_tls_refused_total"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Reviews:
    """The ``reviews`` sidecar under the corpus's policy, with a TLS client context per caller."""

    env: MtlsMesh
    agent: Agent
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.agent.ports["inbound"]

    def context(self, caller: str | None) -> ssl.SSLContext | None:
        """Mutual TLS presenting a certificate of the mesh's CA for ``caller``; ``None`` (plaintext) without one."""
        if caller is None:
            return None
        if caller not in self._contexts:
            ca = self.env.control.ca
            self._contexts[caller] = tls_client_context(ca.credentials(SpiffeId.parse(caller)), ca.bundle_pem)
        return self._contexts[caller]

    def reached_app(self, since: int) -> list[str]:
        """The request targets the application received after its first ``since`` requests."""
        with self.env.app.lock:
            return [target for _, target, _ in self.env.app.requests[since:]]

    def refused(self, reason: str | None = None) -> float:
        """``mesh_tls_refused_total`` of the inbound side, of ``reason`` or all reasons."""
        labels = {"direction": "inbound"} if reason is None else {"direction": "inbound", "reason": reason}
        return _metric(self.agent, REFUSED, **labels)


@pytest.fixture(scope="module")
def reviews() -> Iterator[Reviews]:
    """``reviews``' sidecar in mTLS mode (PERMISSIVE: plaintext callers too), enforcing the corpus's policy."""
    with mtls_mesh(FakeControlPlane()) as env:
        agent = env.agent(corpus.SERVICE, env.app.port)
        until(
            lambda: agent.ready() and agent.certificates is not None and agent.certificates.current is not None,
            "reviews' sidecar joined the mesh with a certificate",
        )
        env.control.inbound = corpus.policy_message()
        env.control.bump()
        until(lambda: env.applied(agent), "reviews' sidecar applied the corpus's policy")
        yield Reviews(env, agent)


def request_bytes(method: str, target: str) -> bytes:
    """A request head written by hand: the target goes out as the corpus has it (Latin-1, as the gate test
    encodes it), where an HTTP client library would quote or refuse it."""
    return f"{method} {target} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n".encode("latin-1")


def parse(data: bytes, *, closed: bool) -> Response | None:
    """The response in ``data`` once it is complete (its Content-Length, or the connection ``closed``)."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        if len(body) < int(length):
            return None
        body = body[: int(length)]
    elif not closed:
        return None
    return Response(int(status_line.split(" ", 2)[1]), headers, body)


def exchange(port: int, context: ssl.SSLContext | None, payload: bytes) -> Response | None:
    """``payload`` on a new connection to ``port`` (TLS with ``context``, else plaintext): the response, or
    ``None`` when the agent closed the connection without one. A connection left open past the deadline is
    neither: ``TimeoutError``."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw:
        conn = context.wrap_socket(raw) if context is not None else raw
        try:
            conn.sendall(payload)
            while (response := parse(received, closed=False)) is None:
                data = conn.recv(65536)
                if not data:
                    return parse(received, closed=True)
                received += data
            return response
        finally:
            conn.close()


def _outcome(response: Response | None) -> tuple[str, str | None]:
    """What the agent did with a path case: (outcome as the corpus names it, the denying policy)."""
    if response is None:
        return "closed without a response", None
    error = response.headers.get("x-mesh-error")
    if response.status == 200 and error is None:
        return "allowed", None
    if (response.status, error) == (403, "denied"):
        return "denied", response.headers.get("x-mesh-policy")
    if (response.status, error) == (400, "bad_request"):
        return "rejected", None
    return f"answered {response.status} {error or '(no x-mesh-error)'}", None


def _path_params() -> list[Any]:
    return [pytest.param(case, id=case.name) for case in corpus.path_cases(agent=True)]


@pytest.mark.parametrize("case", _path_params())
def test_path_case_through_the_agent(reviews: Reviews, case: corpus.PathCase) -> None:
    since = len(reviews.env.app.requests)
    response = exchange(reviews.port, reviews.context(case.caller), request_bytes(case.method, case.target))
    outcome, policy_id = _outcome(response)
    reached = reviews.reached_app(since)
    # A case "gets through" when anything of it reaches the application though the corpus says it must not,
    # or it reaches it at another path than the one authorized.
    got_through = bool(reached) and (case.expect != "allowed" or reached != [case.forwarded])
    corpus.record("path (agent)", case.name, got_through)
    sent = f"{case.method} {case.target!r} as {case.caller or 'a plaintext caller'}"
    assert outcome == case.expect, f"{sent}: {outcome}, the corpus says {case.expect} ({response})"
    if case.expect == "allowed":
        assert response is not None
        assert reached == [case.forwarded], f"{sent}: the application received {reached}"
        assert json.loads(response.body)["path"] == case.forwarded
        return
    assert reached == [], f"{sent} was {outcome}, yet the application received {reached}"
    assert response is not None
    body = json.loads(response.body)
    if case.expect == "denied":
        assert policy_id == case.policy, f"{sent}: denied by {policy_id}, the corpus says {case.policy}"
        assert (body["mesh_error"], body["policy"]) == ("denied", case.policy)
    else:
        assert body["mesh_error"] == "bad_request"


def _posing_as_a_ca(ca: TestCa) -> Authority:
    """A workload certificate of the mesh with its key, used to sign as if it were a CA (it is not one)."""
    issued = ca.credentials(SpiffeId.parse(corpus.load()["callers"]["admin"]))
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = tuple(x509.load_pem_x509_certificates(issued.chain_pem))
    return Authority(chain[0], key, chain, ca.signer.root)


def _credentials(ca: TestCa, case: corpus.CertificateCase) -> Credentials | None:
    if case.issuer == "none":
        return None
    issuer = {"mesh": ca, "workload": ca, "foreign": TestCa()}[case.issuer]
    return issuer.credentials(
        SpiffeId.parse(case.identity),
        now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=case.issued_offset_s),
        ttl=dt.timedelta(seconds=case.ttl_s),
        uris=case.uris,
        signer=_posing_as_a_ca(ca) if case.issuer == "workload" else None,
    )


@pytest.mark.parametrize("case", corpus.certificate_cases(), ids=lambda case: case.name)
def test_certificate_case(reviews: Reviews, case: corpus.CertificateCase) -> None:
    ca = reviews.env.control.ca
    # The client trusts the mesh's CA: only the agent's judgement of the client's certificate is on trial.
    context = tls_client_context(_credentials(ca, case), ca.bundle_pem)
    since = len(reviews.env.app.requests)
    refused_before = reviews.refused()
    reason_before = reviews.refused(case.reason) if case.reason else 0.0
    error: Exception | None = None
    try:
        response = exchange(reviews.port, context, request_bytes("GET", case.target))
    except (ssl.SSLError, ConnectionError) as exc:  # the handshake failed, or the agent reset the connection
        response, error = None, exc
    reached = reviews.reached_app(since)
    outcome = "served" if response is not None or reached else "refused"
    corpus.record("certificate", case.name, outcome == "served" and case.expect != "served")
    what = f"{case.name}: {response or error or 'closed without a response'}, the application received {reached}"
    assert outcome == case.expect, what
    if case.expect == "served":
        assert response is not None
        assert (response.status, reached) == (200, [case.target]), what
        assert reviews.refused() == refused_before
        return
    assert case.reason is not None, f"{case.name}: a refused case names the reason it is counted under"
    until(
        lambda: reviews.refused(case.reason) >= reason_before + 1,
        f"{case.name}: counted as {REFUSED}{{direction=inbound, reason={case.reason}}}",
    )
    assert reviews.refused() == refused_before + 1, f"{case.name}: counted once, under {case.reason} only"
