"""Periodic policy housekeeping."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from meshui.policy.changes import do_expire_changes
from meshui.policy.jwks import do_refresh_jwks


@shared_task(name="meshui.policy.expire_change_requests")
def expire_change_requests() -> int:
    """Expire submitted change requests past their deadline; returns how many."""
    return len(do_expire_changes(timezone.now()))


@shared_task(name="meshui.policy.refresh_jwks")
def refresh_jwks() -> int:
    """Refetch the key sets RequestAuthentication policies name; returns how many changed."""
    return do_refresh_jwks(timezone.now())
