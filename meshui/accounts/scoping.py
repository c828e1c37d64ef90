"""Narrowing querysets to the namespaces a user holds a capability in."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability

M = TypeVar("M", bound=Model)


def restrict_to_namespaces(queryset: QuerySet[M], user: Any, capability: Capability) -> QuerySet[M]:
    """Rows whose namespace (reached through the model's ``namespace_lookup``) grants ``capability``.

    Rows that belong to no namespace are kept only for users who hold the
    capability everywhere.
    """
    ids = namespace_access(user).namespaces_with(capability)
    if ids is None:
        return queryset
    lookup: str = queryset.model.namespace_lookup  # type: ignore[attr-defined]
    return queryset.filter(**{f"{lookup}__in": ids})
