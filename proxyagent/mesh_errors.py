"""Errors the mesh itself answers with, so users can tell them from their apps' errors."""

from __future__ import annotations

import json
from enum import StrEnum
from http import HTTPStatus


class MeshErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    NO_ROUTE = "no_route"
    NO_HEALTHY_UPSTREAM = "no_healthy_upstream"
    UPSTREAM_CONNECT_FAILED = "upstream_connect_failed"
    UPSTREAM_RESET = "upstream_reset"
    TIMEOUT = "timeout"
    LOOP_DETECTED = "loop_detected"
    # A destination's circuit breaker is over a limit: answered at once instead of queueing for a timeout.
    CIRCUIT_OPEN = "circuit_open"
    # The destination's traffic policy told the caller's agent to fail this request (testing resilience).
    FAULT_INJECTED = "fault_injected"
    # The callee's authorization policy refused the request (the body names the policy, never its rules).
    DENIED = "denied"
    # The request's bearer token did not verify against the issuers the callee trusts.
    UNAUTHENTICATED = "unauthenticated"


STATUS_BY_CODE: dict[MeshErrorCode, int] = {
    MeshErrorCode.BAD_REQUEST: 400,
    MeshErrorCode.NO_ROUTE: 404,
    MeshErrorCode.NO_HEALTHY_UPSTREAM: 503,
    MeshErrorCode.UPSTREAM_CONNECT_FAILED: 503,
    MeshErrorCode.UPSTREAM_RESET: 502,
    MeshErrorCode.TIMEOUT: 504,
    MeshErrorCode.LOOP_DETECTED: 508,
    MeshErrorCode.CIRCUIT_OPEN: 503,
    # The policy's abort_status replaces it.
    MeshErrorCode.FAULT_INJECTED: 503,
    MeshErrorCode.DENIED: 403,
    MeshErrorCode.UNAUTHENTICATED: 401,
}

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    508: "Loop Detected",
}


_BODILESS = frozenset({204, 304})


def _reason(status: int) -> str:
    reason = _REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    return reason


class MeshError(Exception):
    def __init__(self, code: MeshErrorCode, detail: str, status: int = 0, policy: str = "") -> None:
        """``status`` replaces the code's usual status (an injected fault's abort status); ``policy`` names the
        policy that decided (``<namespace>/<name>``), for the caller's operators."""
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self._status = status
        self.policy = policy

    @property
    def status(self) -> int:
        return self._status or STATUS_BY_CODE[self.code]

    def response(self, *, keep_alive: bool) -> bytes:
        """The whole HTTP/1.1 response, head and body, ready for one write."""
        status = self.status
        if status in _BODILESS:
            # An injected 204 or 304: such a response has no body to say why, only the header.
            head = (
                f"HTTP/1.1 {status} {_reason(status)}\r\n"
                f"x-mesh-error: {self.code}\r\n"
                f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
            )
            return head.encode("latin-1")
        fields: dict[str, str] = {"mesh_error": str(self.code), "detail": self.detail}
        extra = ""
        if self.policy:
            fields["policy"] = self.policy
            extra = f"x-mesh-policy: {self.policy}\r\n"
        if status == 401:
            # RFC 9110 11.6.1: a 401 says which scheme would do.
            extra += 'www-authenticate: Bearer error="invalid_token"\r\n'
        body = json.dumps(fields).encode()
        head = (
            f"HTTP/1.1 {status} {_reason(status)}\r\n"
            f"content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-mesh-error: {self.code}\r\n"
            f"{extra}"
            f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        return head.encode("latin-1") + body
