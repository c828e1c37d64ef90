"""Errors the mesh itself answers with, so users can tell them from their apps' errors."""

from __future__ import annotations

import json
from enum import StrEnum


class MeshErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    NO_ROUTE = "no_route"
    NO_HEALTHY_UPSTREAM = "no_healthy_upstream"
    UPSTREAM_CONNECT_FAILED = "upstream_connect_failed"
    UPSTREAM_RESET = "upstream_reset"
    TIMEOUT = "timeout"
    LOOP_DETECTED = "loop_detected"


STATUS_BY_CODE: dict[MeshErrorCode, int] = {
    MeshErrorCode.BAD_REQUEST: 400,
    MeshErrorCode.NO_ROUTE: 404,
    MeshErrorCode.NO_HEALTHY_UPSTREAM: 503,
    MeshErrorCode.UPSTREAM_CONNECT_FAILED: 503,
    MeshErrorCode.UPSTREAM_RESET: 502,
    MeshErrorCode.TIMEOUT: 504,
    MeshErrorCode.LOOP_DETECTED: 508,
}

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    508: "Loop Detected",
}


class MeshError(Exception):
    def __init__(self, code: MeshErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]

    def response(self, *, keep_alive: bool) -> bytes:
        """The whole HTTP/1.1 response, head and body, ready for one write."""
        body = json.dumps({"mesh_error": str(self.code), "detail": self.detail}).encode()
        head = (
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}\r\n"
            f"content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-mesh-error: {self.code}\r\n"
            f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        return head.encode("latin-1") + body
