"""Fetching the key sets that RequestAuthentication policies name, so agents never fetch URLs themselves.

A fetch that fails keeps the last good key set (and records why); a key set that changed
bumps the mesh version, so agents verify tokens with the issuer's current keys.
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.request
from datetime import datetime

from django.conf import settings
from django.db import transaction

from meshui.audit.models import digest
from meshui.policy.models import JwksDocument, Policy, PolicyKind
from meshui.policy.validation import jwks_problem
from meshui.rollout.actions import do_bump_version

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5
MAX_JWKS_BYTES = 512 * 1024


class JwksFetchError(RuntimeError):
    pass


def fetch_jwks(uri: str) -> object:
    """The key set at ``uri`` (HTTPS, certificate verified), parsed and checked, or ``JwksFetchError``."""
    if not uri.startswith("https://") and not (settings.MESH_JWKS_ALLOW_HTTP and uri.startswith("http://")):
        raise JwksFetchError("key sets are fetched over HTTPS only")
    request = urllib.request.Request(uri, headers={"Accept": "application/json", "User-Agent": "meshui-jwks"})  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(  # noqa: S310 - scheme checked above
            request, timeout=FETCH_TIMEOUT_SECONDS, context=ssl.create_default_context()
        ) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise JwksFetchError(f"fetching failed: {exc}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksFetchError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksFetchError("the key set is not JSON") from None
    problem = jwks_problem(document)
    if problem:
        raise JwksFetchError(problem)
    return document


def referenced_uris() -> set[str]:
    specs = Policy.objects.filter(kind=PolicyKind.REQUEST_AUTHENTICATION).values_list("spec", flat=True)
    return {spec["jwks_uri"] for spec in specs if spec.get("jwks_uri")}


def do_refresh_jwks(now: datetime) -> int:
    """Fetch every referenced key set; returns how many changed (each change bumps the mesh version once)."""
    changed = 0
    for uri in sorted(referenced_uris()):
        try:
            document = fetch_jwks(uri)
        except JwksFetchError as exc:
            logger.warning("JWKS %s: %s (keeping the last good key set)", uri, exc)
            JwksDocument.objects.update_or_create(
                uri=uri, defaults={"last_error": str(exc)[:500], "last_attempt_at": now}
            )
            continue
        with transaction.atomic():
            row, _ = JwksDocument.objects.select_for_update().get_or_create(uri=uri)
            new_digest = digest(document)
            if row.digest != new_digest:
                changed += 1
                do_bump_version()
            row.document, row.digest, row.fetched_at, row.last_attempt_at, row.last_error = (
                document,
                new_digest,
                now,
                now,
                "",
            )
            row.save()
    return changed
