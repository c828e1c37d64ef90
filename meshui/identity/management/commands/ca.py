"""Inspect and rotate the mesh's certificate authority."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from meshui.identity.actions import ca_status, do_retire_root, do_rotate_ca
from meshui.identity.store import CaConfigurationError


class Command(BaseCommand):
    help = (
        "`show` lists the trusted roots; `rotate` adds a new signing root (agents re-issue with the next push); "
        "`retire ID` removes an old root once every agent has re-issued."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True)
        verbs.add_parser("show")
        verbs.add_parser("rotate")
        retire = verbs.add_parser("retire")
        retire.add_argument("id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["verb"] == "rotate":
                self.stdout.write(f"new signing root {do_rotate_ca(None)}")
            elif options["verb"] == "retire":
                do_retire_root(None, options["id"])
                self.stdout.write(f"retired {options['id']}")
        except CaConfigurationError as exc:
            raise CommandError(str(exc)) from None
        for root in ca_status()["roots"]:
            marker = "signing" if root["signing"] else "trusted"
            self.stdout.write(f"{root['id'] or '(secret)'}  {marker}  sha256:{root['fingerprint_sha256']}")
