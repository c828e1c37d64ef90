"""What a change request would change: each item's live spec beside its proposed one, path by path."""

from __future__ import annotations

from typing import Any

from meshui.policy.models import ChangeRequest, Policy

_MISSING = object()


def spec_changes(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """The leaves that differ between two JSON values: ``{"path", "before", "after"}``, absent sides as null.

    Lists are compared by position: a split's entries and a policy's rules are ordered,
    and the order is part of what they mean.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        changes = []
        for key in sorted(before.keys() | after.keys()):
            inner = f"{path}.{key}" if path else key
            changes.extend(spec_changes(before.get(key, _MISSING), after.get(key, _MISSING), inner))
        return changes
    if isinstance(before, list) and isinstance(after, list):
        changes = []
        for index in range(max(len(before), len(after))):
            left = before[index] if index < len(before) else _MISSING
            right = after[index] if index < len(after) else _MISSING
            changes.extend(spec_changes(left, right, f"{path}[{index}]"))
        return changes
    if before == after:
        return []
    return [
        {
            "path": path,
            "before": None if before is _MISSING else before,
            "after": None if after is _MISSING else after,
        }
    ]


def change_diff(change: ChangeRequest) -> list[dict[str, Any]]:
    """Per item: the live spec now, the proposed spec, and the paths that differ."""
    live = {(policy.kind, policy.name): policy for policy in Policy.objects.filter(namespace=change.namespace_id)}
    diff = []
    for item in change.items.all():
        current = live.get((item.kind, item.name))
        before = current.spec if current is not None else None
        diff.append(
            {
                "operation": item.operation,
                "kind": item.kind,
                "name": item.name,
                "service": item.service,
                "before": before,
                "after": item.spec,
                "changes": spec_changes(before or {}, item.spec or {}),
                # The live object moved on since the item was written: applying it would be refused.
                "stale": (current.spec_digest if current is not None else "") != item.base_digest,
            }
        )
    return diff
