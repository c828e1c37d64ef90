"""Announcing that what agents should see has changed."""

from __future__ import annotations

from django.db import transaction

from meshui.rollout.models import MeshVersion


def do_bump_version() -> int:
    """Bump the mesh config version and push the new snapshot once the surrounding transaction commits.

    Call inside the transaction of the change, so agents never hear of a change that rolled back.
    """
    from meshui.rollout.tasks import push_snapshots  # late: the task module imports the catalog

    version = MeshVersion.bump()
    transaction.on_commit(lambda: push_snapshots.delay(version))
    return version
