"""Join tokens that let an agent prove who it is, and the record of certificates issued."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q

from meshui.catalog.models import Namespace
from meshui.catalog.validators import DNS_LABEL_MAX

JOIN_TOKEN_PREFIX = "meshjoin"  # noqa: S105 - a public marker, not a secret


def _digest(token: str) -> str:
    # 256 random bits: a fast hash is as safe as a slow one and keeps issuance cheap.
    return hashlib.sha256(token.encode()).hexdigest()


class JoinTokenQuerySet(models.QuerySet["JoinToken"]):
    def usable(self, now: datetime) -> JoinTokenQuerySet:
        return self.filter(expires_at__gt=now, revoked_at__isnull=True)


class JoinToken(models.Model):
    """Lets an agent obtain certificates for one namespace (and one service account, or any in it).

    Only a digest is stored; the secret is shown once, when the token is created.
    """

    namespace_lookup = "namespace_id"

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="join_tokens")
    service_account = models.CharField(
        max_length=DNS_LABEL_MAX, blank=True, help_text="Empty: any service account of the namespace."
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = JoinTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        scope = f"{self.namespace.name}/{self.service_account or '*'}"
        return f"join token {JOIN_TOKEN_PREFIX}_{self.prefix}_… for {scope}"

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id

    @classmethod
    def issue(
        cls,
        namespace: Namespace,
        service_account: str,
        expires_at: datetime,
        *,
        created_by: object = None,
        description: str = "",
    ) -> tuple[JoinToken, str]:
        """Create a token; returns it with the plain secret, which is kept nowhere."""
        prefix = secrets.token_hex(6)
        plain = f"{JOIN_TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(
            namespace=namespace,
            service_account=service_account,
            prefix=prefix,
            digest=_digest(plain),
            expires_at=expires_at,
            created_by=created_by,
            description=description,
        )
        return token, plain

    @classmethod
    def find(cls, plain: str, now: datetime) -> JoinToken | None:
        """The usable token ``plain`` is, or ``None`` (unknown, wrong secret, expired or revoked)."""
        parts = plain.split("_", 2)
        if len(parts) != 3 or parts[0] != JOIN_TOKEN_PREFIX or len(parts[1]) != 12:
            return None
        token = cls.objects.usable(now).select_related("namespace").filter(prefix=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, _digest(plain)):
            return None
        return token

    def grants(self, namespace: str, service_account: str) -> bool:
        return self.namespace.name == namespace and self.service_account in ("", service_account)


class IssuedCertificate(models.Model):
    """A workload certificate the CA signed: who asked, for which identity, valid until when."""

    namespace_lookup = "namespace_id"

    serial = models.CharField(max_length=40, unique=True, help_text="Hexadecimal serial number.")
    spiffe_id = models.CharField(max_length=400)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="certificates")
    service_account = models.CharField(max_length=253)
    agent_id = models.CharField(max_length=128, blank=True)
    authority = models.CharField(max_length=64, help_text="SHA-256 fingerprint of the root it chains to.")
    credential = models.CharField(max_length=32, help_text="join_token, kubernetes or certificate (a renewal).")
    join_token = models.ForeignKey(JoinToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    issued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        indexes = [models.Index(fields=["agent_id", "-issued_at"], name="certificate_agent_time")]
        constraints = [models.CheckConstraint(condition=Q(not_after__gt=models.F("not_before")), name="cert_validity")]

    def __str__(self) -> str:
        return f"{self.spiffe_id} until {self.not_after:%Y-%m-%dT%H:%M:%SZ}"

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id


class CaChangeState(models.TextChoices):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class CaOperation(models.TextChoices):
    ROTATE = "rotate"
    RETIRE = "retire"


class CaChange(models.Model):
    """A requested rotation of the CA, or retirement of a root, waiting for approval by another person.

    The CA belongs to every namespace, so a change needs the approvals the strictest namespace asks for
    (``required_approvals``, fixed when it is requested) from people who may approve in all of them.
    Applied as soon as the last approval is given; an admin may apply one at once with a written reason.
    """

    operation = models.CharField(max_length=16, choices=CaOperation.choices)
    authority_id = models.CharField(max_length=64, blank=True, help_text="The root to retire (retire only).")
    reason = models.CharField(max_length=2000, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=CaChangeState.choices, default=CaChangeState.PENDING)
    required_approvals = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=2000, blank=True)
    emergency_reason = models.CharField(
        max_length=2000, blank=True, help_text="Set when an admin applied it without approval."
    )
    # The root a rotation created, once applied.
    created_authority_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "expires_at"], name="ca_change_state_expiry")]
        constraints = [
            models.CheckConstraint(
                condition=Q(operation="rotate", authority_id="") | Q(operation="retire") & ~Q(authority_id=""),
                name="ca_change_names_a_root_only_to_retire",
            )
        ]

    def __str__(self) -> str:
        target = f" {self.authority_id}" if self.authority_id else ""
        return f"CA change #{self.pk}: {self.operation}{target} ({self.state})"

    def is_expired(self, now: datetime) -> bool:
        return self.state == CaChangeState.PENDING and self.expires_at <= now


class CaChangeApproval(models.Model):
    change = models.ForeignKey(CaChange, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["approved_at", "id"]
        constraints = [models.UniqueConstraint(fields=["change", "approver"], name="ca_change_one_approval_each")]

    def __str__(self) -> str:
        return f"{self.approver} approved CA change #{self.change_id}"
