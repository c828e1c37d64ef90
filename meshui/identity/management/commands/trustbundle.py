"""``manage.py trustbundle``: print the mesh's trust bundle (PEM), what agents take as ``--trust-bundle``.

An agent verifies the control plane's TLS with these roots before it sends its join token;
``ca show`` lists the same roots by fingerprint only. Certificates, never keys.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from meshui.identity.issuance import bundle_pem, ca_store
from meshui.identity.store import CaConfigurationError


class Command(BaseCommand):
    help = "Print the CA's trust bundle (PEM, the signing root first) for agents' --trust-bundle."

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        try:
            store = ca_store()
            store.signer(now)  # a fresh data directory gets its first root here, as the control plane would
            pem = bundle_pem(store, now)
        except CaConfigurationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(pem.decode("ascii"), ending="")
