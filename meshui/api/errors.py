"""One place that turns exceptions into API responses (and audits refusals)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from meshui.audit.actions import do_record_refusal
from meshui.audit.models import AuditAction

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the object."
    default_code = "conflict"


class NamespacePermissionDenied(exceptions.PermissionDenied):
    """A refusal that knows which namespace it was about, so its audit event can say so."""

    def __init__(self, detail: str, namespace_id: int | None) -> None:
        super().__init__(detail)
        self.namespace_id = namespace_id


def mesh_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ProtectedError | RestrictedError):
        blocking = sorted({str(obj) for obj in list(exc.args[1])[:10]})
        exc = Conflict(f"Still in use by: {', '.join(blocking)}. Delete those first.")
    elif isinstance(exc, IntegrityError):
        # Serializers validate uniqueness; this is the race where two requests passed validation at once.
        logger.info("integrity error turned into 409: %s", exc)
        exc = Conflict("The object conflicts with one that already exists.")
    response = exception_handler(exc, context)
    request = context.get("request")
    if response is None or request is None:
        return response
    if isinstance(exc, exceptions.PermissionDenied):
        do_record_refusal(request, AuditAction.DENIED, str(exc.detail), namespace_id=getattr(exc, "namespace_id", None))
    elif isinstance(exc, exceptions.AuthenticationFailed):
        do_record_refusal(request, AuditAction.AUTH_FAILED, str(exc.detail))
    return response
