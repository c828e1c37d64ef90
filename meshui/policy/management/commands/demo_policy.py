"""Lock the demo's namespace down the way a platform team would: deny by default, allow its own callers.

The change goes through the same review as any other, by the demo's two users: `editor`
proposes it and `approver` approves it, so the version history shows who did what.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import HttpRequest
from rest_framework.request import Request

from meshui.catalog.models import Namespace
from meshui.policy.changes import do_apply, do_approve, do_open_change, do_submit
from meshui.policy.items import ProposedItem
from meshui.policy.models import Policy


def _acting_as(username: str) -> Request:
    """A request on behalf of ``username``, so the audit log names them and how they acted."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"user {username!r} does not exist: run `manage.py demo_users` first")
    http = HttpRequest()
    http.method = "POST"
    http.path = "manage.py demo_policy"
    request = Request(http)
    request.user = user
    return request


def lockdown_items(namespace: str) -> list[ProposedItem]:
    return [
        ProposedItem("create", "authorization_default", "default", "", {"default": "deny-all"}),
        ProposedItem(
            "create",
            "authorization",
            "same-namespace",
            "",
            {"action": "ALLOW", "rules": [{"from": {"namespaces": [namespace]}}]},
        ),
        ProposedItem("create", "peer_authentication", "default", "", {"mode": "STRICT"}),
    ]


class Command(BaseCommand):
    help = (
        "Apply a reviewed change to NAMESPACE: authorization deny-all by default, an ALLOW for callers of the "
        "same namespace, and STRICT mutual TLS (make demo runs it once; it does nothing if NAMESPACE has policy)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--namespace", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace, _ = Namespace.objects.get_or_create(name=options["namespace"])
        if Policy.objects.filter(namespace=namespace).exists():
            self.stdout.write(f"namespace {namespace.name} already has policy: left as it is")
            return
        editor, approver = _acting_as("editor"), _acting_as("approver")
        change = do_open_change(
            editor,
            namespace,
            f"Zero trust for {namespace.name}",
            "Deny by default; allow callers from this namespace; mutual TLS only.",
            lockdown_items(namespace.name),
        )
        change = do_submit(editor, change)
        change = do_approve(approver, change, seen_digest=change.digest, comment="Reviewed for the demo.")
        change = do_apply(editor, change)
        assert change.applied_version is not None
        self.stdout.write(
            f"applied config version {change.applied_version.number} to {namespace.name}: "
            "deny-all, allow same-namespace callers, STRICT mTLS"
        )
