"""Issue a personal API token from the command line, for automation set-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from meshui.accounts.models import ApiToken
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction


class Command(BaseCommand):
    help = "Issue an API token for USER and print it (the only time it is shown)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label for the token")
        parser.add_argument("--expires-in-days", type=int, default=None, help="expiry; default never")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {options['username']!r}")
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        with transaction.atomic():
            token, plain = ApiToken.issue(user, options["name"], expires_at)
            do_record_change(None, AuditAction.CREATE, token, namespace_id=None)
        self.stdout.write(plain)
