"""Roles, the capabilities each grants, and what one user may do where.

A role is granted in one namespace or in all of them (a ``RoleBinding`` with no
namespace). Capabilities are the verbs the API checks; roles are only named
bundles of them, so a new endpoint asks "may this user EDIT here?" and never
"is this user an editor?".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


class Capability(StrEnum):
    VIEW = "view"
    EDIT = "edit"  # change catalog objects
    PROPOSE = "propose"  # open a policy change request
    APPROVE = "approve"  # approve someone else's change request
    MANAGE = "manage"  # grant roles, read the audit log


# Approvers do not edit: separating who proposes from who approves is the point
# of a review. Admins can do both, as an escape hatch.
ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.VIEWER: frozenset({Capability.VIEW}),
    Role.EDITOR: frozenset({Capability.VIEW, Capability.EDIT, Capability.PROPOSE}),
    Role.APPROVER: frozenset({Capability.VIEW, Capability.APPROVE}),
    Role.ADMIN: frozenset(Capability),
}


@dataclass(frozen=True)
class NamespaceAccess:
    """Everything one user may do, everywhere (``everywhere``) and per namespace id."""

    everywhere: frozenset[Capability] = frozenset()
    by_namespace: dict[int, frozenset[Capability]] = field(default_factory=dict)

    @classmethod
    def from_bindings(cls, bindings: Iterable[tuple[str, int | None]]) -> NamespaceAccess:
        """Build from ``(role, namespace_id or None for all)`` pairs."""
        everywhere: set[Capability] = set()
        by_namespace: dict[int, set[Capability]] = {}
        for role, namespace_id in bindings:
            granted = ROLE_CAPABILITIES[role]
            if namespace_id is None:
                everywhere |= granted
            else:
                by_namespace.setdefault(namespace_id, set()).update(granted)
        return cls(frozenset(everywhere), {ns: frozenset(caps) for ns, caps in by_namespace.items()})

    @classmethod
    def superuser(cls) -> NamespaceAccess:
        return cls(everywhere=frozenset(Capability))

    def can(self, capability: Capability, namespace_id: int | None) -> bool:
        """Whether ``capability`` is held in the namespace; ``None`` asks about all namespaces at once."""
        if capability in self.everywhere:
            return True
        if namespace_id is None:
            return False
        return capability in self.by_namespace.get(namespace_id, frozenset())

    def namespaces_with(self, capability: Capability) -> frozenset[int] | None:
        """The namespace ids where ``capability`` is held; ``None`` means every namespace."""
        if capability in self.everywhere:
            return None
        return frozenset(ns for ns, caps in self.by_namespace.items() if capability in caps)

    def capabilities_in(self, namespace_id: int) -> frozenset[Capability]:
        return self.everywhere | self.by_namespace.get(namespace_id, frozenset())
