"""Operations on the mesh's CA, each audited and, where agents must learn of it, pushed."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from django.db import transaction
from django.utils import timezone
from rest_framework.request import Request

from meshui.audit.actions import do_record_operation
from meshui.audit.models import AuditAction
from meshui.identity.issuance import ca_store
from meshui.rollout.actions import do_bump_version

CA_OBJECT = "identity.ca_root"


def ca_status() -> dict[str, Any]:
    """The roots agents trust (never a key): id, fingerprint, validity, and which one signs."""
    now = timezone.now()
    store = ca_store()
    signing_root = store.signer(now).root
    return {
        "read_only": store.read_only,
        "roots": [
            {
                "id": root_id,
                "fingerprint_sha256": root.fingerprint(hashes.SHA256()).hex(),
                "subject": root.subject.rfc4514_string(),
                "not_after": root.not_valid_after_utc,
                "signing": root == signing_root,
            }
            for root_id, root in store.bundle_entries(now)
        ],
    }


def do_rotate_ca(request: Request | None) -> str:
    """Add a new root and sign with it; agents learn the new bundle with the next push and re-issue."""
    authority_id = ca_store().rotate(timezone.now())
    with transaction.atomic():
        do_record_operation(request, AuditAction.ROTATE, CA_OBJECT, authority_id, "new root, now signing")
        do_bump_version()
    return authority_id


def do_retire_root(request: Request | None, authority_id: str) -> None:
    """Remove an old root from the bundle: certificates it signed stop being trusted."""
    ca_store().retire(authority_id)
    with transaction.atomic():
        do_record_operation(request, AuditAction.RETIRE, CA_OBJECT, authority_id, "root removed from the bundle")
        do_bump_version()
