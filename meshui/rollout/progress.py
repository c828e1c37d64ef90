"""Progress of a rollout as it happens: counts and per-agent outcomes, published to the Channels group ``rollout``.

A rollout (one run of ``push_snapshots``) publishes a ``rollout.progress``
event when it starts (every agent pending), after each batch of outcomes it
has committed, and when it ends (``done``). Every event carries the running
counts, whole, so a subscriber that missed one (the layer drops messages for a
slow consumer) is right again at the next; per-agent outcomes come only once,
in the event of their batch. Counts are also kept per namespace, so a
subscriber allowed to see some namespaces only is told their share
(``for_namespaces``).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

from meshui.rollout.models import PushOutcome

ROLLOUT_GROUP = "rollout"
EVENT_TYPE = "rollout.progress"
_OUTCOMES = (PushOutcome.ACKED, PushOutcome.REJECTED, PushOutcome.UNREACHABLE)


def _summary(total: int, counts: Counter[str]) -> dict[str, int]:
    acked, rejected, unreachable = (counts[outcome] for outcome in _OUTCOMES)
    return {
        "total": total,
        "acked": acked,
        "rejected": rejected,
        "unreachable": unreachable,
        "failed": rejected + unreachable,
        "pending": total - acked - rejected - unreachable,
    }


class RolloutProgress:
    """Running counts of one rollout, and the events that report them."""

    def __init__(self, version: int, triggered_by: int, agents: dict[int, tuple[str, str]]) -> None:
        """``agents``: (agent id, namespace name) by primary key, for every agent this rollout pushes to."""
        self.version = version
        self.triggered_by = triggered_by
        self.rollout_id = uuid.uuid4().hex
        self._agents = agents
        self._counts: Counter[str] = Counter()
        self._by_namespace: dict[str, Counter[str]] = {}
        self._totals: Counter[str] = Counter(namespace for _, namespace in agents.values())
        self._seq = 0

    @property
    def counts(self) -> dict[str, int]:
        return _summary(len(self._agents), self._counts)

    def add(self, outcomes: Iterable[tuple[int, str, int | None, str, int]]) -> list[dict[str, Any]]:
        """Count ``(agent pk, outcome, applied version, detail, attempts)`` tuples; returns them as event rows."""
        rows = []
        for agent_pk, outcome, applied_version, detail, attempts in outcomes:
            agent_id, namespace = self._agents.get(agent_pk, ("", ""))
            self._counts[outcome] += 1
            self._by_namespace.setdefault(namespace, Counter())[outcome] += 1
            rows.append(
                {
                    "agent_id": agent_id,
                    "namespace": namespace,
                    "outcome": str(outcome),
                    "applied_version": applied_version,
                    "detail": detail,
                    "attempts": attempts,
                }
            )
        return rows

    def event(self, outcomes: list[dict[str, Any]], *, done: bool = False, error: str = "") -> dict[str, Any]:
        self._seq += 1
        return {
            "type": EVENT_TYPE,
            "rollout": self.rollout_id,
            "seq": self._seq,
            "version": self.version,
            "triggered_by": self.triggered_by,
            **self.counts,
            "namespaces": {
                namespace: _summary(total, self._by_namespace.get(namespace, Counter()))
                for namespace, total in sorted(self._totals.items())
            },
            "outcomes": outcomes,
            "done": done,
            "error": error,
        }


def for_namespaces(event: dict[str, Any], visible: Collection[str] | None) -> dict[str, Any]:
    """The event as a browser sees it (``type`` ``rollout_progress``): only ``visible`` namespaces (None: all)."""
    body = {key: value for key, value in event.items() if key != "type"}
    if visible is not None:
        namespaces = {name: counts for name, counts in event["namespaces"].items() if name in visible}
        totals: Counter[str] = Counter()
        for counts in namespaces.values():
            totals.update(counts)
        body.update({key: totals[key] for key in ("total", "acked", "rejected", "unreachable", "failed", "pending")})
        body["namespaces"] = namespaces
        body["outcomes"] = [row for row in event["outcomes"] if row["namespace"] in visible]
    return {"type": "rollout_progress", **body}
