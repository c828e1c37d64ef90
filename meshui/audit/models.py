"""The audit log: an append-only record of every write and every refused request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models

from meshui.catalog.models import Namespace


class AuditAction(models.TextChoices):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REVOKE = "revoke"
    DENIED = "denied"
    AUTH_FAILED = "auth_failed"
    # The life of a policy change request.
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    EXPIRE = "expire"
    APPLY = "apply"
    EMERGENCY_APPLY = "emergency_apply"
    # The mesh's certificate authority.
    ROTATE = "rotate"
    RETIRE = "retire"


def digest(data: Any) -> str:
    """A stable SHA-256 of an object's serialized form; equal data gives an equal digest."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditEvent(models.Model):
    """Who did what to which object, when (UTC) and from where.

    The actor and namespace are kept by name as well as by reference, so an
    event still says who and where after the user or namespace is deleted.
    """

    namespace_lookup = "namespace_id"

    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, blank=True, help_text="app_label.model, e.g. catalog.service")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    namespace = models.ForeignKey(Namespace, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    namespace_name = models.CharField(max_length=63, blank=True)
    before_digest = models.CharField(max_length=64, blank=True)
    after_digest = models.CharField(max_length=64, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    request_method = models.CharField(max_length=10, blank=True)
    request_path = models.CharField(max_length=300, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["actor", "occurred_at"], name="audit_actor_time"),
            models.Index(fields=["action", "occurred_at"], name="audit_action_time"),
        ]

    def __str__(self) -> str:
        when = f"{self.occurred_at:%Y-%m-%dT%H:%M:%SZ}"
        return f"{when} {self.actor_name or '-'} {self.action} {self.object_type}:{self.object_id}"

    @property
    def namespace_pk(self) -> int | None:
        return self.namespace_id
