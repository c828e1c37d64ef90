"""The agent's workload certificate: obtained before registering, renewed at half-life, re-issued on rotation.

``WorkloadCertificates`` holds the current certificate and the ``ssl``
contexts built from it. Each new certificate or bundle builds new contexts and
swaps them in with one assignment: new handshakes use the new ones, and
connections already open keep theirs (TLS never looks at a certificate again
once the handshake is done), so nothing in flight is dropped.

- First certificate: a join token proves who the agent is.
- Renewal at half-life: a new key, and the current certificate plus the
  current key's signature over the new CSR prove it (a join token is used
  again only when the control plane refuses that, e.g. once expired).
- CA rotation: a snapshot brings a bundle whose first root (the one the CA now
  signs with) did not sign our chain: the new bundle is trusted at once and a
  new certificate is requested.
- Control plane unreachable: retries with backoff and jitter, serving with the
  current certificate meanwhile (until it expires, peers accept it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable

import grpc

from proxyagent.metric_registry import Counter, Gauge, Registry
from proxyagent.protocol.v1 import control_pb2
from proxyagent.tls.material import (
    CertificateError,
    WorkloadCertificate,
    make_csr,
    new_key,
    proof_of_possession,
)

logger = logging.getLogger(__name__)

IssueCall = Callable[[control_pb2.IssueCertificateRequest], Awaitable[control_pb2.IssueCertificateResponse]]
# Refusals of a renewal credential after which joining again with the token may still work.
_REFUSED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def _utc(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CertificateMetrics:
    def __init__(self, registry: Registry) -> None:
        self.issued = Counter(
            "mesh_certificates_issued",
            "Workload certificates this agent obtained, by the credential that proved its identity "
            "(join_token, kubernetes_token, renewal).",
            ("credential",),
            registry=registry,
        )
        self.failures = Counter(
            "mesh_certificate_failures",
            "Failed attempts to obtain a workload certificate (control plane unreachable or refusing).",
            registry=registry,
        )
        self.not_after = Gauge(
            "mesh_certificate_expiry_timestamp_seconds",
            "When the agent's current workload certificate expires (Unix time); 0 before it has one.",
            registry=registry,
        )


class WorkloadCertificates:
    def __init__(
        self,
        spiffe_id: str,
        *,
        agent_id: str = "",
        join_token: str = "",
        kubernetes_token: Callable[[], str] | None = None,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.spiffe_id = spiffe_id
        self.agent_id = agent_id
        self._join_token = join_token
        # Read at each use: the kubelet rewrites a projected service-account token before it expires.
        self._kubernetes_token = kubernetes_token
        self._clock = clock
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self.metrics = CertificateMetrics(registry if registry is not None else Registry())
        self.current: WorkloadCertificate | None = None
        # Built from ``current``; read by the listeners at each new connection.
        self.server_context: ssl.SSLContext | None = None
        self.client_context: ssl.SSLContext | None = None
        # Bumped with each new certificate or bundle.
        self.generation = 0
        self.issued_total = 0
        self.failures_total = 0
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._reissue = False
        self._listeners: list[Callable[[WorkloadCertificate], None]] = []

    def on_change(self, listener: Callable[[WorkloadCertificate], None]) -> None:
        self._listeners.append(listener)

    @property
    def due(self) -> bool:
        current = self.current
        return current is None or self._reissue or self._clock() >= current.renew_at

    def request_renewal(self) -> None:
        """Renew now rather than at half-life (the next loop turn)."""
        self._reissue = True
        self._wake.set()

    def wake(self) -> None:
        """Look at the clock again (tests with an injected clock)."""
        self._wake.set()

    def bundle_changed(self, bundle_pem: bytes) -> None:
        """A snapshot's trust bundle: trust it from now on; re-issue if our chain is not from its first root."""
        current = self.current
        if not bundle_pem or current is None or bundle_pem == current.bundle_pem:
            return
        try:
            updated = current.with_bundle(bundle_pem)
        except CertificateError as exc:
            logger.error("ignoring the snapshot's trust bundle: %s", exc)
            return
        self._install(updated)
        if not updated.chains_to_signing_root:
            logger.info("the mesh's CA signs with a new root: requesting a certificate from it")
            self.request_renewal()

    async def run(self, issue: IssueCall) -> None:
        """Obtain the first certificate, then renew it whenever it is due, for as long as the agent runs."""
        backoff = self._backoff_initial_s
        while True:
            if not self.due:
                current = self.current
                assert current is not None
                await self._sleep(current.renew_at - self._clock())
                continue
            try:
                await self.issue_once(issue)
            except (grpc.aio.AioRpcError, CertificateError) as exc:
                self.failures_total += 1
                self.metrics.failures.inc()
                detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                current = self.current
                if current is None:
                    logger.error("no workload certificate yet (%s); retrying in %.1f s", detail, backoff)
                elif self._clock() >= current.not_after:
                    logger.error(
                        "the workload certificate expired at %s and renewing failed (%s); retrying in %.1f s",
                        _utc(current.not_after),
                        detail,
                        backoff,
                    )
                else:
                    logger.warning(
                        "renewing the workload certificate failed (%s); serving with the current one until %s, "
                        "retrying in %.1f s",
                        detail,
                        _utc(current.not_after),
                        backoff,
                    )
                delay = backoff * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not crypto
                backoff = min(backoff * 2, self._backoff_max_s)
                await asyncio.sleep(delay)
            else:
                backoff = self._backoff_initial_s

    def _credentials(self, renewing: bool) -> list[str]:
        """What may prove this agent's identity, in the order tried: its certificate (to renew), the join token,
        the Kubernetes token. A join token is the operator's explicit choice, but it expires: past a refusal, the
        service-account token the kubelet keeps fresh still gets the agent in."""
        credentials = ["renewal"] if renewing else []
        if self._join_token:
            credentials.append("join_token")
        if self._kubernetes_token is not None:
            credentials.append("kubernetes_token")
        return credentials

    def _request(
        self, credential: str, csr: bytes, current: WorkloadCertificate | None
    ) -> control_pb2.IssueCertificateRequest:
        request = control_pb2.IssueCertificateRequest(agent_id=self.agent_id, csr_pem=csr)
        if credential == "renewal":
            assert current is not None
            request.current_certificate_chain_pem = current.chain_pem
            request.proof_of_possession = proof_of_possession(current.key, csr)
        elif credential == "join_token":
            request.join_token = self._join_token
        else:
            assert self._kubernetes_token is not None
            try:
                token = self._kubernetes_token().strip()
            except OSError as exc:
                raise CertificateError(f"reading the Kubernetes service-account token: {exc}") from None
            if not token:
                raise CertificateError("the Kubernetes service-account token file is empty")
            request.kubernetes_token = token
        return request

    async def issue_once(self, issue: IssueCall) -> WorkloadCertificate:
        """One request for a new certificate with a new key, each credential in turn while the control plane
        refuses the one before; raises ``AioRpcError`` or ``CertificateError``."""
        key = new_key()
        csr = make_csr(key, self.spiffe_id)
        current = self.current
        now = self._clock()
        renewing = current is not None and current.not_before <= now < current.not_after
        credentials = self._credentials(renewing)
        if not credentials:
            raise CertificateError("the certificate expired and there is no join token to join the mesh again")
        for index, credential in enumerate(credentials):
            try:
                reply = await issue(self._request(credential, csr, current))
                break
            except grpc.aio.AioRpcError as exc:
                following = credentials[index + 1 : index + 2]
                if exc.code() not in _REFUSED or not following:
                    raise
                logger.warning(
                    "the control plane refused the %s (%s); trying the %s",
                    credential.replace("_", " "),
                    exc.details(),
                    following[0].replace("_", " "),
                )
        issued = WorkloadCertificate.build(key, reply.certificate_chain_pem, reply.trust_bundle_pem, self.spiffe_id)
        self._reissue = False
        self._install(issued)
        self.issued_total += 1
        self.metrics.issued.labels(credential).inc()
        logger.info(
            "workload certificate %s for %s (%s), valid until %s, renewing at %s",
            issued.serial,
            issued.spiffe_id,
            credential,
            _utc(issued.not_after),
            _utc(issued.renew_at),
        )
        return issued

    def _install(self, certificate: WorkloadCertificate) -> None:
        server, client = certificate.server_context(), certificate.client_context()
        self.current = certificate
        self.server_context, self.client_context = server, client
        self.generation += 1
        self.metrics.not_after.set(certificate.not_after)
        self.ready.set()
        for listener in self._listeners:
            try:
                listener(certificate)
            except Exception:  # one listener's bug must not stop the others from seeing the certificate
                logger.exception("a certificate listener failed")

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
