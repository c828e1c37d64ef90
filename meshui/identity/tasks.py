"""Periodic identity housekeeping."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from meshui.identity.ca_changes import do_expire_ca_changes


@shared_task(name="meshui.identity.expire_ca_changes")
def expire_ca_changes() -> int:
    """Expire pending CA changes past their deadline; returns how many."""
    return len(do_expire_ca_changes(timezone.now()))
