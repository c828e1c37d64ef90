"""Create the demo's reviewers: an editor who proposes changes and an approver who reviews them."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from meshui.accounts.models import RoleBinding
from meshui.accounts.roles import Role
from meshui.catalog.models import Namespace
from meshui.environment import env_secret

# Two people, because an author can never approve their own change.
DEMO_USERS = (("editor", Role.EDITOR), ("approver", Role.APPROVER))


class Command(BaseCommand):
    help = (
        "Create the users 'editor' and 'approver' with those roles in a namespace (make demo runs it for the "
        "sample mesh). The password comes from MESHUI_DEMO_PASSWORD (or MESHUI_DEMO_PASSWORD_FILE); if unset, "
        "new users get a generated password, printed once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--namespace", required=True, help="where the demo users hold their roles")

    def handle(self, *args: Any, **options: Any) -> None:
        password = env_secret(os.environ, "MESHUI_DEMO_PASSWORD")
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        user_model = get_user_model()
        created = []
        with transaction.atomic():
            namespace, _ = Namespace.objects.get_or_create(name=options["namespace"])
            for username, role in DEMO_USERS:
                user = user_model.objects.filter(username=username).first()
                if user is None:
                    user = user_model.objects.create_user(username=username, password=password)
                    created.append(username)
                elif not generated:
                    user.set_password(password)
                    user.save(update_fields=["password"])
                RoleBinding.objects.get_or_create(user=user, role=role, namespace=namespace)
        for username, role in DEMO_USERS:
            state = "created" if username in created else "already exists"
            self.stdout.write(f"demo user {username!r} ({role} in {namespace.name}) {state}")
        if generated and created:
            self.stdout.write(self.style.WARNING(f"generated demo users' password (shown once): {password}"))
