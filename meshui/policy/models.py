"""Live policy, the change requests that alter it, their approvals, and the versions they produce.

Live policy is only ever written by applying a change request (ADR 015): people propose,
others approve, and each apply records an immutable ``ConfigVersion`` holding the whole
policy document, so any version can be inspected, diffed and restored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from meshui.audit.models import digest
from meshui.catalog.models import Namespace
from meshui.catalog.validators import DNS_LABEL_MAX, dns_label


class PolicyKind(models.TextChoices):
    TRAFFIC = "traffic", "TrafficPolicy"
    AUTHORIZATION = "authorization", "AuthorizationPolicy"
    PEER_AUTHENTICATION = "peer_authentication", "PeerAuthentication"
    AUTHORIZATION_DEFAULT = "authorization_default", "Namespace authorization default"
    REQUEST_AUTHENTICATION = "request_authentication", "RequestAuthentication"


# Kinds that exist once per namespace, always under this name.
SINGLETON_NAME = "default"
NAMESPACE_SINGLETONS = frozenset({PolicyKind.PEER_AUTHENTICATION, PolicyKind.AUTHORIZATION_DEFAULT})


class Policy(models.Model):
    """One live policy object: a validated spec of one kind, named within its namespace.

    Every kind shares this table (the spec's shape is the kind's serializer in
    ``validation.py``): one place to diff, version and roll back. Services are
    referenced by name, as in Kubernetes, so a policy may outlive a service
    redeploy; references are checked when a change is validated.
    """

    namespace_lookup = "namespace_id"

    kind = models.CharField(max_length=32, choices=PolicyKind.choices)
    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="policies")
    name = models.CharField(max_length=DNS_LABEL_MAX, validators=[dns_label])
    service = models.CharField(
        max_length=DNS_LABEL_MAX,
        blank=True,
        help_text="The service the policy applies to; empty for namespace-wide policy.",
    )
    spec = models.JSONField()
    version = models.ForeignKey(
        "ConfigVersion", on_delete=models.PROTECT, related_name="+", help_text="The version that last wrote it."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["namespace__name", "kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "namespace", "name"], name="policy_unique_name")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.namespace.name}/{self.name}"

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id

    @property
    def spec_digest(self) -> str:
        return digest(self.spec)

    def document_entry(self) -> dict[str, Any]:
        """This policy as one entry of a ``ConfigVersion`` document."""
        return {
            "kind": self.kind,
            "namespace": self.namespace.name,
            "name": self.name,
            "service": self.service,
            "spec": self.spec,
        }


class JwksDocument(models.Model):
    """An issuer's JSON Web Key Set as the control plane last fetched it (agents never fetch URLs)."""

    uri = models.URLField(max_length=500, unique=True)
    document = models.JSONField(null=True, blank=True, help_text="The last key set that parsed; kept on errors.")
    digest = models.CharField(max_length=64, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["uri"]

    def __str__(self) -> str:
        return self.uri


class ApprovalRule(models.Model):
    """How many approvals a namespace's changes need; namespaces without a rule use the setting's default."""

    namespace_lookup = "namespace_id"

    namespace = models.OneToOneField(Namespace, on_delete=models.CASCADE, related_name="approval_rule")
    required_approvals = models.PositiveSmallIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(required_approvals__gte=1), name="approval_rule_at_least_one")
        ]

    def __str__(self) -> str:
        return f"{self.namespace.name}: {self.required_approvals} approval(s)"

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id

    @staticmethod
    def required_for(namespace_id: int) -> int:
        rule = ApprovalRule.objects.filter(namespace_id=namespace_id).values_list("required_approvals", flat=True)
        return int(rule.first() or settings.MESH_DEFAULT_REQUIRED_APPROVALS)


class ChangeState(models.TextChoices):
    DRAFT = "draft"
    PENDING = "pending"  # submitted, waiting for approvals
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    APPLIED = "applied"


OPEN_STATES = frozenset({ChangeState.DRAFT, ChangeState.PENDING, ChangeState.APPROVED})
EDITABLE_STATES = OPEN_STATES


class ChangeRequest(models.Model):
    """A proposed set of creates, updates and deletes of one namespace's policy."""

    namespace_lookup = "namespace_id"

    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="change_requests")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="change_requests")
    state = models.CharField(max_length=16, choices=ChangeState.choices, default=ChangeState.DRAFT)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the items: what an approval is bound to.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_reason = models.CharField(max_length=2000, blank=True)
    emergency_reason = models.CharField(
        max_length=2000, blank=True, help_text="Set when an admin applied it without approval."
    )
    restores = models.ForeignKey(
        "ConfigVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="rollbacks",
        help_text="The version this change rolls back to, for a rollback.",
    )
    applied_version = models.OneToOneField(
        "ConfigVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="applied_change"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "expires_at"], name="change_state_expiry")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id

    @property
    def is_emergency(self) -> bool:
        return bool(self.emergency_reason)

    def compute_digest(self) -> str:
        return digest([item.digest_entry() for item in self.items.order_by("kind", "name")])

    def is_expired(self, now: datetime) -> bool:
        return self.state == ChangeState.PENDING and self.expires_at is not None and self.expires_at <= now

    def valid_approvals(self) -> models.QuerySet[Approval]:
        """Approvals of exactly the current items; an edit leaves older ones behind."""
        return self.approvals.filter(digest=self.digest)

    def approval_count(self) -> int:
        return self.valid_approvals().values("approver").distinct().count()


class ChangeOperation(models.TextChoices):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ChangeItem(models.Model):
    """One create, update or delete of a policy object, as proposed.

    ``base_digest`` is the digest of the live spec the author edited: applying
    over a live object that has changed since is refused, never silently merged.
    """

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="items")
    operation = models.CharField(max_length=8, choices=ChangeOperation.choices)
    kind = models.CharField(max_length=32, choices=PolicyKind.choices)
    name = models.CharField(max_length=DNS_LABEL_MAX, validators=[dns_label])
    service = models.CharField(max_length=DNS_LABEL_MAX, blank=True)
    spec = models.JSONField(null=True, blank=True)
    base_digest = models.CharField(max_length=64, blank=True)
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["change", "kind", "name"], name="change_item_unique_target")]

    def __str__(self) -> str:
        return f"{self.operation} {self.kind} {self.name}"

    def digest_entry(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "kind": self.kind,
            "name": self.name,
            "service": self.service,
            "spec": self.spec,
            "base": self.base_digest,
        }


class Approval(models.Model):
    """One approver's yes to one exact content (``digest``) of a change request."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals")
    digest = models.CharField(max_length=64)
    comment = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["change", "approver", "digest"], name="approval_once_per_content")
        ]

    def __str__(self) -> str:
        return f"{self.approver} approved #{self.change_id}"


class ChangeComment(models.Model):
    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.CharField(max_length=5000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"comment by {self.author} on #{self.change_id}"


class ImmutableVersionError(ValidationError):
    """A write to a config version after it was created."""


class ConfigVersion(models.Model):
    """An applied state of all policy: monotonic ``number``, the whole ``document``, and who made it so.

    Written once, never updated or deleted. ``mesh_version`` is the snapshot
    version bumped by the apply: an agent holding that snapshot (or a later
    one) runs this policy.
    """

    namespace_lookup = "namespace_id"

    number = models.PositiveBigIntegerField(unique=True)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the document.")
    document = models.JSONField(help_text="Every live policy after this version was applied.")
    namespace = models.ForeignKey(
        Namespace, on_delete=models.PROTECT, related_name="+", help_text="The namespace the change was in."
    )
    author_name = models.CharField(max_length=150)
    approver_names = models.JSONField(default=list)
    applied_by_name = models.CharField(max_length=150)
    applied_at = models.DateTimeField(auto_now_add=True)
    emergency_reason = models.CharField(max_length=2000, blank=True)
    mesh_version = models.BigIntegerField(default=0)
    summary = models.CharField(max_length=200)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"config version {self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableVersionError("A config version is immutable once written.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableVersionError("A config version is immutable; restore an earlier one with a rollback instead.")

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id

    @property
    def is_emergency(self) -> bool:
        return bool(self.emergency_reason)

    @staticmethod
    def latest_number() -> int:
        return int(ConfigVersion.objects.aggregate(top=models.Max("number"))["top"] or 0)
