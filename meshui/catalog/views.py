"""REST endpoints for the catalog: declarative viewsets, the rules live in the base classes."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Subquery

from meshui.accounts.roles import Capability
from meshui.api.viewsets import NamespacedModelViewSet
from meshui.catalog import filters
from meshui.catalog.models import Agent, Instance, Namespace, Service, Workload
from meshui.catalog.serializers import (
    AgentSerializer,
    InstanceSerializer,
    NamespaceSerializer,
    ServiceSerializer,
    WorkloadSerializer,
)
from meshui.identity.models import IssuedCertificate


class NamespaceViewSet(NamespacedModelViewSet):
    """Namespaces. Creating or deleting one needs a global admin; a namespace's admin may relabel it."""

    affects_snapshots = True
    queryset = Namespace.objects.all()
    serializer_class = NamespaceSerializer
    write_capability = Capability.MANAGE
    filterset_fields = ["name"]
    ordering_fields = ["name", "created_at"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return None

    def write_scope(self, obj: Any) -> int | None:
        return None if self.action == "destroy" else obj.pk


class ServiceViewSet(NamespacedModelViewSet):
    affects_snapshots = True
    queryset = Service.objects.select_related("namespace")
    serializer_class = ServiceSerializer
    filterset_class = filters.ServiceFilter
    ordering_fields = ["name", "created_at", "updated_at"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return validated_data["namespace"].pk  # type: ignore[no-any-return]


class WorkloadViewSet(NamespacedModelViewSet):
    affects_snapshots = True
    queryset = Workload.objects.select_related("service__namespace")
    serializer_class = WorkloadSerializer
    filterset_class = filters.WorkloadFilter
    ordering_fields = ["name", "created_at", "updated_at"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return validated_data["service"].namespace_id  # type: ignore[no-any-return]


class InstanceViewSet(NamespacedModelViewSet):
    affects_snapshots = True
    queryset = Instance.objects.select_related("workload__service")
    serializer_class = InstanceSerializer
    filterset_class = filters.InstanceFilter
    ordering_fields = ["address", "port", "last_seen", "created_at"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return validated_data["workload"].namespace_pk  # type: ignore[no-any-return]


def _latest_certificate(field: str) -> Subquery:
    latest = IssuedCertificate.objects.filter(agent_id=OuterRef("agent_id")).order_by("-issued_at", "-id")
    return Subquery(latest.values(field)[:1])


class AgentViewSet(NamespacedModelViewSet):
    affects_snapshots = True
    queryset = Agent.objects.select_related("namespace").annotate(
        certificate_spiffe_id=_latest_certificate("spiffe_id"),
        certificate_not_after=_latest_certificate("not_after"),
    )
    serializer_class = AgentSerializer
    filterset_class = filters.AgentFilter
    ordering_fields = ["agent_id", "last_heartbeat", "registered_at"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return validated_data["namespace"].pk  # type: ignore[no-any-return]
