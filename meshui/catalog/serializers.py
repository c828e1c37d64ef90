from __future__ import annotations

from typing import Any

from rest_framework import serializers

from meshui.api.serializers import StrictModelSerializer, VisiblePrimaryKeyRelatedField, VisibleSlugRelatedField
from meshui.catalog.models import Agent, Instance, Namespace, Service, Workload


class NamespaceSerializer(StrictModelSerializer):
    class Meta:
        model = Namespace
        fields = ["id", "name", "labels", "created_at", "updated_at"]
        create_only_fields = ["name"]


class ServiceSerializer(StrictModelSerializer):
    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all())

    class Meta:
        model = Service
        fields = ["id", "namespace", "name", "ports", "labels", "load_balancer", "created_at", "updated_at"]
        create_only_fields = ["namespace", "name"]


class WorkloadSerializer(StrictModelSerializer):
    service = VisiblePrimaryKeyRelatedField(queryset=Service.objects.all())
    namespace = serializers.CharField(source="service.namespace.name", read_only=True)

    class Meta:
        model = Workload
        fields = ["id", "service", "namespace", "name", "labels", "service_account", "created_at", "updated_at"]
        create_only_fields = ["service", "name"]


class InstanceSerializer(StrictModelSerializer):
    workload = VisiblePrimaryKeyRelatedField(queryset=Workload.objects.all())

    class Meta:
        model = Instance
        fields = ["id", "workload", "address", "port", "health", "last_seen", "created_at", "updated_at"]
        create_only_fields = ["workload"]


class AgentSerializer(StrictModelSerializer):
    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all())

    class Meta:
        model = Agent
        fields = [
            "id",
            "agent_id",
            "namespace",
            "instance",
            "version",
            "admin_address",
            "config_version",
            "status",
            "last_heartbeat",
            "registered_at",
        ]
        create_only_fields = ["agent_id", "namespace"]

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Declared here, not as a class attribute, because a class attribute named
        # "instance" would shadow the serializer's own ``self.instance``.
        fields["instance"] = VisiblePrimaryKeyRelatedField(
            queryset=Instance.objects.all(), required=False, allow_null=True
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        namespace = attrs.get("namespace") or (self.instance.namespace if self.instance is not None else None)
        instance = attrs.get("instance")
        if instance is not None and namespace is not None and instance.namespace_pk != namespace.pk:
            raise serializers.ValidationError({"instance": ["The instance must be in the agent's namespace."]})
        return attrs
