"""Retention of the span store, run by Celery beat."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from meshui.telemetry.actions import do_prune_spans

logger = logging.getLogger(__name__)


@shared_task(name="meshui.telemetry.prune_spans")
def prune_spans() -> dict[str, int]:
    pruned = do_prune_spans(
        timezone.now(), timedelta(hours=settings.MESH_SPAN_RETENTION_HOURS), settings.MESH_SPAN_MAX_ROWS
    )
    if pruned.spans:
        logger.info("retention removed %d spans and %d traces", pruned.spans, pruned.traces)
    return {"spans": pruned.spans, "traces": pruned.traces}
