"""Migration 0006 moves trace memberships and the root's rank into TraceSummary, and back, losing nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("telemetry", "0005_rollup_watermark")]
AFTER = [("telemetry", "0006_trace_namespaces_and_root_in_summary")]
T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


def _migrate(target: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.fixture
def at_0005(transactional_db: None) -> Iterator[Any]:
    try:
        yield _migrate(BEFORE)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _span(apps: Any, trace: str, span: str, parent: str, service: str, namespace: str, ms: int) -> None:
    apps.get_model("telemetry", "Span").objects.create(
        trace_id=trace, span_id=span, parent_span_id=parent, service=service, namespace=namespace, operation="op",
        start=T0 + dt.timedelta(milliseconds=ms), end=T0 + dt.timedelta(milliseconds=ms + 5), duration_us=5000,
    )  # fmt: skip


def test_memberships_and_root_ranks_move_into_summaries_and_back(at_0005: Any) -> None:
    apps = at_0005
    summaries, memberships = apps.get_model("telemetry", "TraceSummary"), apps.get_model("telemetry", "TraceNamespace")
    orphan, rooted = "a" * 32, "b" * 32
    _span(apps, orphan, "1" * 16, "9" * 16, "web", "shop", ms=20)  # its parent never arrived
    _span(apps, orphan, "2" * 16, "1" * 16, "billing", "money", ms=10)
    _span(apps, rooted, "3" * 16, "", "web", "shop", ms=30)
    _span(apps, rooted, "4" * 16, "3" * 16, "cart", "shop", ms=5)
    for trace, namespaces in ((orphan, ["money", "shop"]), (rooted, ["shop"])):
        summaries.objects.create(
            trace_id=trace, root_service="web", root_operation="op", start=T0, end=T0, duration_us=0,
            span_count=2, error=False, services=[],
        )  # fmt: skip
        memberships.objects.bulk_create([memberships(trace_id=trace, namespace=n) for n in namespaces])

    after = _migrate(AFTER).get_model("telemetry", "TraceSummary")
    by_trace = {s.trace_id: s for s in after.objects.all()}
    assert by_trace[orphan].namespaces == {"money": True, "shop": True}
    ms = dt.timedelta(milliseconds=1)
    assert (by_trace[orphan].root_has_parent, by_trace[orphan].root_start) == (True, T0 + 10 * ms)
    assert by_trace[rooted].namespaces == {"shop": True}
    assert (by_trace[rooted].root_has_parent, by_trace[rooted].root_start) == (False, T0 + 30 * ms)

    restored = _migrate(BEFORE).get_model("telemetry", "TraceNamespace")
    assert sorted(restored.objects.values_list("trace_id", "namespace")) == [
        (orphan, "money"),
        (orphan, "shop"),
        (rooted, "shop"),
    ]
