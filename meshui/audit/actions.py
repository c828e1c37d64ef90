"""Writing audit events. Views and tasks call these; nothing else creates ``AuditEvent`` rows."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework.request import Request

from meshui.audit.models import AuditAction, AuditEvent, digest
from meshui.catalog.models import Namespace


def _request_fields(request: Request | None) -> dict[str, Any]:
    if request is None:
        return {}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        user = None
    return {
        "actor": user,
        "actor_name": user.get_username() if user is not None else "",
        "source_ip": request.META.get("REMOTE_ADDR") or None,
        "request_method": request.method or "",
        "request_path": request.path[:300],
    }


def _namespace_fields(namespace_id: int | None) -> dict[str, Any]:
    if namespace_id is None:
        return {}
    name = Namespace.objects.filter(pk=namespace_id).values_list("name", flat=True).first()
    return {"namespace_id": namespace_id if name is not None else None, "namespace_name": name or ""}


def do_record_change(
    request: Request | None,
    action: AuditAction,
    obj: models.Model,
    *,
    namespace_id: int | None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Record a write. Call inside the transaction of the write, so both commit or neither does."""
    return AuditEvent.objects.create(
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk) if obj.pk is not None else "",
        object_repr=str(obj)[:200],
        before_digest=digest(before) if before is not None else "",
        after_digest=digest(after) if after is not None else "",
        **_namespace_fields(namespace_id),
        **_request_fields(request),
    )


def do_record_refusal(
    request: Request, action: AuditAction, detail: str, *, namespace_id: int | None = None
) -> AuditEvent:
    """Record a refused request (failed authentication or authorization)."""
    return AuditEvent.objects.create(
        action=action, detail=detail[:500], **_namespace_fields(namespace_id), **_request_fields(request)
    )


def do_record_operation(
    request: Request | None, action: AuditAction, object_type: str, object_id: str, detail: str
) -> AuditEvent:
    """Record an operation on something that is not a database row (the CA's roots, say)."""
    return AuditEvent.objects.create(
        action=action,
        object_type=object_type,
        object_id=object_id[:64],
        object_repr=object_id[:200],
        detail=detail[:500],
        **_request_fields(request),
    )
