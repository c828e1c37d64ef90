from typing import Any

from rest_framework import serializers

from meshui.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer[Any]):
    actor = serializers.CharField(source="actor_name", read_only=True)
    namespace = serializers.CharField(source="namespace_name", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "namespace",
            "before_digest",
            "after_digest",
            "source_ip",
            "request_method",
            "request_path",
            "detail",
        ]
        read_only_fields = fields
