"""Make sure the first administrator exists (used by ``make demo`` and the Helm chart's init job)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from meshui.environment import env_secret, env_str


class Command(BaseCommand):
    help = (
        "Create the admin user (MESHUI_ADMIN_USER, default 'admin') if missing. The password comes from "
        "MESHUI_ADMIN_PASSWORD or MESHUI_ADMIN_PASSWORD_FILE; if neither is set a new admin gets a generated "
        "password, printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = env_str(os.environ, "MESHUI_ADMIN_USER", "admin")
        password = env_secret(os.environ, "MESHUI_ADMIN_PASSWORD")
        user_model = get_user_model()
        with transaction.atomic():
            user = user_model.objects.filter(username=username).first()
            if user is not None and not user.is_superuser:
                raise CommandError(f"user {username!r} exists and is not an administrator")
            if user is not None and password is None:
                self.stdout.write(f"admin user {username!r} already exists")
                return
            generated = password is None
            password = password or secrets.token_urlsafe(16)
            if user is None:
                user_model.objects.create_superuser(username=username, email="", password=password)
                action = "created"
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
                action = "updated"
        self.stdout.write(f"admin user {username!r} {action}")
        if generated:
            self.stdout.write(self.style.WARNING(f"generated admin password (shown once): {password}"))
