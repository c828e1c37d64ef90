"""Trace namespaces and the root's rank move into TraceSummary (ADR 011): a batch then merges into a summary
without a membership table or a second read of the trace's spans."""

from django.db import migrations, models


_BACKFILL_POSTGRESQL = [
    """
    UPDATE telemetry_tracesummary AS s SET namespaces = m.names
    FROM (SELECT trace_id, jsonb_object_agg(namespace, true) AS names FROM telemetry_tracenamespace GROUP BY trace_id) m
    WHERE s.trace_id = m.trace_id
    """,
    """
    UPDATE telemetry_tracesummary AS s SET root_has_parent = r.has_parent, root_start = r.start
    FROM (
        SELECT DISTINCT ON (trace_id) trace_id, parent_span_id <> '' AS has_parent, start
        FROM telemetry_span ORDER BY trace_id, parent_span_id <> '', start, id
    ) r
    WHERE s.trace_id = r.trace_id
    """,
    "UPDATE telemetry_tracesummary SET root_start = start WHERE root_start IS NULL",
]


def _backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        # Set-based: a store of millions of traces would take hours row by row.
        for statement in _BACKFILL_POSTGRESQL:
            schema_editor.execute(statement)
        return
    summaries = apps.get_model("telemetry", "TraceSummary")
    spans = apps.get_model("telemetry", "Span")
    memberships = apps.get_model("telemetry", "TraceNamespace")
    batch = []
    for summary in summaries.objects.order_by("pk").iterator(chunk_size=2000):
        trace = spans.objects.filter(trace_id=summary.trace_id)
        root = trace.order_by("start", "pk").filter(parent_span_id="").first()
        has_parent = root is None
        if root is None:
            root = trace.order_by("start", "pk").first()
        names = memberships.objects.filter(trace_id=summary.trace_id).values_list("namespace", flat=True)
        summary.namespaces = dict.fromkeys(sorted(names), True)
        summary.root_has_parent = has_parent
        summary.root_start = root.start if root is not None else summary.start
        batch.append(summary)
        if len(batch) >= 2000:
            summaries.objects.bulk_update(batch, ["namespaces", "root_has_parent", "root_start"])
            batch = []
    summaries.objects.bulk_update(batch, ["namespaces", "root_has_parent", "root_start"])


def _restore_memberships(apps, schema_editor):  # type: ignore[no-untyped-def]
    summaries = apps.get_model("telemetry", "TraceSummary")
    memberships = apps.get_model("telemetry", "TraceNamespace")
    rows = []
    for trace_id, namespaces in summaries.objects.values_list("trace_id", "namespaces").iterator(chunk_size=2000):
        rows += [memberships(trace_id=trace_id, namespace=name) for name in namespaces or {}]
        if len(rows) >= 2000:
            memberships.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    memberships.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0005_rollup_watermark"),
    ]

    operations = [
        migrations.AddField(
            model_name="tracesummary",
            name="namespaces",
            field=models.JSONField(default=dict, help_text="Every namespace with a span in the trace (as keys)."),
        ),
        migrations.AddField(
            model_name="tracesummary",
            name="root_has_parent",
            field=models.BooleanField(default=False, help_text="The root's own parent never reached us."),
        ),
        migrations.AddField(
            model_name="tracesummary",
            name="root_start",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(_backfill, _restore_memberships),
        migrations.DeleteModel(name="TraceNamespace"),
    ]
