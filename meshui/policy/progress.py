"""How far a config version has reached: acked, pending or failed, per agent."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from meshui.catalog.models import Agent, AgentStatus
from meshui.policy.models import ConfigVersion
from meshui.rollout.models import ConfigPush, PushOutcome


def rollout_progress(version: ConfigVersion, agents: QuerySet[Agent], *, per_agent: bool) -> dict[str, Any]:
    """Counts (and, with ``per_agent``, each agent's state) for the live ``agents`` given.

    An agent has the version once it acknowledged its snapshot version or a later one.
    It failed when its latest push at or after that version was rejected or could not
    reach it, and it has not caught up since (a heartbeat repairs an unreachable one).
    Disconnected agents are left out: they no longer serve traffic.
    """
    live = list(
        agents.exclude(status=AgentStatus.DISCONNECTED)
        .select_related("namespace")
        .order_by("agent_id")
        .values("pk", "agent_id", "namespace__name", "status", "config_version")
    )
    latest_failure: dict[int, tuple[str, str]] = {}
    pushes = (
        ConfigPush.objects.filter(agent_id__in=[row["pk"] for row in live], version__gte=version.mesh_version)
        .order_by("agent_id", "-pushed_at", "-id")
        .values_list("agent_id", "outcome", "detail")
    )
    for agent_pk, outcome, detail in pushes:
        latest_failure.setdefault(agent_pk, (outcome, detail))
    counts = {"acked": 0, "pending": 0, "failed": 0}
    rows = []
    for row in live:
        detail = ""
        if row["config_version"] is not None and row["config_version"] >= version.mesh_version:
            state = "acked"
        elif latest_failure.get(row["pk"], (PushOutcome.ACKED, ""))[0] != PushOutcome.ACKED:
            state = "failed"
            detail = f"{latest_failure[row['pk']][0]}: {latest_failure[row['pk']][1]}"
        else:
            state = "pending"
        counts[state] += 1
        if per_agent:
            rows.append(
                {
                    "agent_id": row["agent_id"],
                    "namespace": row["namespace__name"],
                    "status": row["status"],
                    "config_version": row["config_version"],
                    "state": state,
                    "detail": detail,
                }
            )
    result: dict[str, Any] = {**counts, "total": len(live)}
    if per_agent:
        result["agents"] = rows
    return result
