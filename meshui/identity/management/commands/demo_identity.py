"""What the demo's sidecars need to join the mesh with mutual TLS: a join token each, and the CA's bundle.

`make demo` runs it once before starting the sidecars; a platform team would hand each
workload its token through a Secret instead. The tokens go to a file only the demo's
user can read, and live just long enough for the sidecars to start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meshui.catalog.models import Namespace
from meshui.catalog.validators import dns_label
from meshui.identity.issuance import bundle_pem, ca_store
from meshui.identity.models import JoinToken

TOKEN_TTL = dt.timedelta(hours=1)


class Command(BaseCommand):
    help = (
        "Create a join token per NAMESPACE/SERVICE_ACCOUNT into OUT/join-tokens.json (mode 0600) and write the "
        "CA's trust bundle to OUT/trust-bundle.pem (make demo runs it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="directory for the two files")
        parser.add_argument("workloads", nargs="+", metavar="NAMESPACE/SERVICE_ACCOUNT")

    def handle(self, *args: Any, **options: Any) -> None:
        out: Path = options["out"]
        identities = []
        for workload in options["workloads"]:
            namespace, _, account = workload.partition("/")
            try:
                dns_label(namespace)
                dns_label(account)
            except Exception as exc:
                raise CommandError(f"{workload!r}: {getattr(exc, 'message', exc)}") from None
            identities.append((namespace, account))
        now = timezone.now()
        tokens = {}
        for namespace_name, account in identities:
            namespace, _ = Namespace.objects.get_or_create(name=namespace_name)
            _, plain = JoinToken.issue(namespace, account, now + TOKEN_TTL, description="make demo")
            tokens[f"{namespace_name}/{account}"] = plain
        out.mkdir(parents=True, exist_ok=True)
        token_file = out / "join-tokens.json"
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(tokens, stream, indent=2, sort_keys=True)
        store = ca_store()
        store.signer(now)  # the CA's first root is made here on a fresh data directory
        (out / "trust-bundle.pem").write_bytes(bundle_pem(store, now))
        self.stdout.write(f"{len(tokens)} join tokens in {token_file}; trust bundle in {out / 'trust-bundle.pem'}")
