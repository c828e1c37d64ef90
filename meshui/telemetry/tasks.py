"""Retention of the span and metric stores, and metric rollups, run by Celery beat."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from meshui.telemetry.actions import do_prune_edge_buckets, do_prune_spans, do_roll_up

logger = logging.getLogger(__name__)


@shared_task(name="meshui.telemetry.prune_spans")
def prune_spans() -> dict[str, int]:
    pruned = do_prune_spans(
        timezone.now(), timedelta(hours=settings.MESH_SPAN_RETENTION_HOURS), settings.MESH_SPAN_MAX_ROWS
    )
    if pruned.spans:
        logger.info("retention removed %d spans and %d traces", pruned.spans, pruned.traces)
    return {"spans": pruned.spans, "traces": pruned.traces}


@shared_task(name="meshui.telemetry.roll_up_metrics")
def roll_up_metrics() -> int:
    # Ten minutes back on every run: late exports (an agent that lost the control plane for a while) still count.
    return do_roll_up(
        timezone.now(),
        timedelta(minutes=10),
        settle=timedelta(seconds=20),
        max_backfill=timedelta(hours=settings.MESH_METRICS_RAW_RETENTION_HOURS),
    )


@shared_task(name="meshui.telemetry.prune_metrics")
def prune_metrics() -> int:
    removed = do_prune_edge_buckets(
        timezone.now(),
        timedelta(hours=settings.MESH_METRICS_RAW_RETENTION_HOURS),
        timedelta(days=settings.MESH_METRICS_ROLLUP_RETENTION_DAYS),
    )
    if removed:
        logger.info("retention removed %d metric buckets", removed)
    return removed
