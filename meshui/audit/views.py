from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework import viewsets

from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces
from meshui.api.permissions import NamespaceRolePermission
from meshui.audit.models import AuditEvent
from meshui.audit.serializers import AuditEventSerializer


class AuditEventFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace_name")
    actor = filters.CharFilter(field_name="actor_name")
    since = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["namespace", "actor", "action", "object_type", "object_id", "since", "until"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet[AuditEvent]):
    """The audit log: readable by the admins of its namespace (or of all), never writable."""

    serializer_class = AuditEventSerializer
    permission_classes = [NamespaceRolePermission]
    read_capability = Capability.MANAGE
    filterset_class = AuditEventFilter
    ordering_fields = ["occurred_at"]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return restrict_to_namespaces(AuditEvent.objects.all(), self.request.user, self.read_capability)
