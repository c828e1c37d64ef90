"""Create, list and revoke the join tokens agents use to obtain their first certificate."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meshui.catalog.models import Namespace
from meshui.catalog.validators import dns_label
from meshui.identity.durations import parse_duration
from meshui.identity.models import JoinToken


class Command(BaseCommand):
    help = "Manage join tokens: `create` prints a new token once; `list`; `revoke PREFIX`."

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True)
        create = verbs.add_parser("create", help="create a token and print it (shown once)")
        create.add_argument("--namespace", required=True)
        create.add_argument("--service-account", default="", help="default: any service account of the namespace")
        create.add_argument("--ttl", default=f"{settings.MESH_JOIN_TOKEN_TTL_HOURS}h", help="e.g. 30m, 24h, 7d")
        create.add_argument("--description", default="")
        verbs.add_parser("list", help="list tokens (never their secrets)")
        revoke = verbs.add_parser("revoke", help="revoke a token by its prefix (the part after meshjoin_)")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['verb']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        try:
            ttl = parse_duration(options["ttl"])
            dns_label(options["namespace"])
            if options["service_account"]:
                dns_label(options["service_account"])
        except Exception as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from None
        # Tokens come before agents: the namespace an agent will join may not exist yet.
        namespace, _ = Namespace.objects.get_or_create(name=options["namespace"])
        token, plain = JoinToken.issue(
            namespace,
            options["service_account"],
            timezone.now() + ttl,
            description=options["description"],
        )
        self.stderr.write(f"{token} expires {token.expires_at:%Y-%m-%dT%H:%M:%SZ}")
        self.stdout.write(plain)

    def _list(self, options: dict[str, Any]) -> None:
        now = timezone.now()
        for token in JoinToken.objects.select_related("namespace"):
            state = "revoked" if token.revoked_at else "expired" if token.expires_at <= now else "usable"
            self.stdout.write(f"{token.prefix}  {token.namespace.name}/{token.service_account or '*'}  {state}")

    def _revoke(self, options: dict[str, Any]) -> None:
        updated = JoinToken.objects.filter(prefix=options["prefix"], revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not updated:
            raise CommandError(f"no usable token with prefix {options['prefix']!r}")
        self.stdout.write(f"revoked {options['prefix']}")
