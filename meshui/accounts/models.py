"""Who may do what: role bindings and personal API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db import models
from django.db.models import Q
from django.utils import timezone

from meshui.accounts.roles import NamespaceAccess, Role
from meshui.catalog.models import Namespace

TOKEN_PREFIX = "mesh"  # noqa: S105 - a public marker, not a secret
_ACCESS_CACHE_ATTR = "_mesh_namespace_access"


class RoleBinding(models.Model):
    """Grants a role to a user or a group, in one namespace or (namespace empty) in all."""

    namespace_lookup = "namespace_id"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="role_bindings"
    )
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="role_bindings")
    role = models.CharField(max_length=16, choices=Role.choices)
    namespace = models.ForeignKey(
        Namespace,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="role_bindings",
        help_text="Empty means every namespace.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="rolebinding_one_subject",
            ),
            # Each constraint covers only its own kind of subject: without the condition, two users'
            # bindings (group null in both) of one role and namespace would collide on the group one.
            models.UniqueConstraint(
                fields=["user", "role", "namespace"],
                condition=Q(user__isnull=False),
                name="rolebinding_unique_user",
                nulls_distinct=False,
            ),
            models.UniqueConstraint(
                fields=["group", "role", "namespace"],
                condition=Q(group__isnull=False),
                name="rolebinding_unique_group",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        subject = f"user {self.user}" if self.user_id else f"group {self.group}"
        where = self.namespace.name if self.namespace is not None else "all namespaces"
        return f"{subject}: {self.role} in {where}"

    @property
    def namespace_pk(self) -> int | None:
        return self.namespace_id


def namespace_access(user: AbstractBaseUser | AnonymousUser) -> NamespaceAccess:
    """The user's capabilities, read once and kept on the user object for the request."""
    cached: NamespaceAccess | None = getattr(user, _ACCESS_CACHE_ATTR, None)
    if cached is not None:
        return cached
    if not user.is_authenticated or not user.is_active:
        access = NamespaceAccess()
    elif getattr(user, "is_superuser", False):
        access = NamespaceAccess.superuser()
    else:
        rows = RoleBinding.objects.filter(Q(user=user) | Q(group__user=user)).values_list("role", "namespace_id")
        access = NamespaceAccess.from_bindings(rows)
    setattr(user, _ACCESS_CACHE_ATTR, access)
    return access


def _digest(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is as safe as a slow one here
    # and keeps authentication cheap.
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self, now: datetime) -> ApiTokenQuerySet:
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)


class ApiToken(models.Model):
    """A personal API token. Only its digest is stored; the secret is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.prefix}_…)"

    @classmethod
    def issue(cls, user: AbstractBaseUser, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
        """Create a token; returns it with the plain secret, which is not kept anywhere."""
        prefix = secrets.token_hex(6)
        plain = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(user=user, name=name, prefix=prefix, digest=_digest(plain), expires_at=expires_at)
        return token, plain

    @staticmethod
    def split(plain: str) -> str | None:
        """The lookup prefix of a presented token; ``None`` if it is not shaped like one of ours."""
        parts = plain.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 12:
            return None
        return parts[1]

    def matches(self, plain: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(plain))

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def touch(self, now: datetime, resolution: timedelta) -> None:
        """Record use, at most once per ``resolution``, with an UPDATE that does not race other requests."""
        if self.last_used_at is None or now - self.last_used_at >= resolution:
            type(self).objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
