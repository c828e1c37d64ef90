from __future__ import annotations

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
        # Health is what the control plane observed from heartbeats, not something to set by hand.
        read_only_fields = ["health", "last_seen"]
        create_only_fields = ["workload"]


class AgentSerializer(StrictModelSerializer):
    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all())
    # The workload certificate the CA last issued to this agent (annotated by the view).
    certificate_spiffe_id = serializers.CharField(read_only=True, allow_null=True, default=None)
    certificate_not_after = serializers.DateTimeField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Agent
        fields = [
            "id",
            "agent_id",
            "namespace",
            "instance",
            "version",
            "admin_address",
            "admin_mtls",
            "config_version",
            "status",
            "last_heartbeat",
            "registered_at",
            "certificate_spiffe_id",
            "certificate_not_after",
        ]
        create_only_fields = ["agent_id", "namespace"]
        # Written by the agent's own registration and heartbeats. Letting a user set the admin
        # address would make the control plane dial (and send snapshots to) any host they name.
        read_only_fields = ["instance", "admin_address", "admin_mtls", "config_version", "status", "last_heartbeat"]
