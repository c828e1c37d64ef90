"""Indexes for trace search: spans by service (to trace ids), and span attributes for tag search.

The GIN index exists on PostgreSQL only (where attributes are jsonb and tag search uses containment);
SQLite has no GIN and keeps comparing values.
"""

from django.db import migrations, models

_GIN = "span_attributes_gin"


def _create_gin(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {_GIN} ON telemetry_span USING gin (attributes jsonb_path_ops)"
        )


def _drop_gin(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {_GIN}")


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0002_edge_bucket_latency_columns"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="span",
            index=models.Index(fields=["service", "trace_id"], name="span_service_trace"),
        ),
        migrations.RunPython(_create_gin, _drop_gin),
    ]
