"""Join tokens (admins) and the record of issued certificates (viewers)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces
from meshui.api.errors import Conflict, NamespacePermissionDenied
from meshui.api.permissions import NamespaceRolePermission
from meshui.api.viewsets import NamespacedModelViewSet
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction
from meshui.identity.actions import ca_status, do_retire_root, do_rotate_ca
from meshui.identity.models import IssuedCertificate, JoinToken
from meshui.identity.serializers import (
    CaOperationSerializer,
    CaStatusSerializer,
    IssuedCertificateSerializer,
    JoinTokenSerializer,
)
from meshui.identity.store import CaConfigurationError


class JoinTokenFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")

    class Meta:
        model = JoinToken
        fields = ["namespace", "service_account"]


class IssuedCertificateFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")

    class Meta:
        model = IssuedCertificate
        fields = ["namespace", "agent_id", "service_account", "spiffe_id"]


class JoinTokenViewSet(NamespacedModelViewSet):
    """Join tokens of the namespaces you administer. DELETE revokes (the row stays, for the audit trail)."""

    http_method_names = ["get", "post", "delete", "head", "options"]
    queryset = JoinToken.objects.select_related("namespace")
    serializer_class = JoinTokenSerializer
    read_capability = Capability.MANAGE
    write_capability = Capability.MANAGE
    filterset_class = JoinTokenFilter
    ordering_fields = ["created_at", "expires_at"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return validated_data["namespace"].pk  # type: ignore[no-any-return]

    def save_kwargs(self) -> dict[str, Any]:
        return {"created_by": self.request.user}

    def perform_destroy(self, instance: Any) -> None:
        with transaction.atomic():
            before = self.snapshot(instance)
            if instance.revoked_at is None:
                instance.revoked_at = timezone.now()
                instance.save(update_fields=["revoked_at"])
            do_record_change(
                self.request,
                AuditAction.REVOKE,
                instance,
                namespace_id=instance.namespace_id,
                before=before,
                after=self.snapshot(instance),
            )


class IssuedCertificateViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[IssuedCertificate]):
    """Certificates the CA issued (never keys: those stay with the agents)."""

    serializer_class = IssuedCertificateSerializer
    permission_classes = [NamespaceRolePermission]
    read_capability = Capability.VIEW
    filterset_class = IssuedCertificateFilter
    ordering_fields = ["issued_at", "not_after"]

    def get_queryset(self) -> QuerySet[IssuedCertificate]:
        certificates = IssuedCertificate.objects.select_related("namespace")
        return restrict_to_namespaces(certificates, self.request.user, self.read_capability)


class CertificateAuthorityView(APIView):
    """The roots agents trust (public material only). Global admins rotate the CA and retire old roots."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=CaStatusSerializer)
    def get(self, request: Request) -> Response:
        return Response(ca_status())

    @extend_schema(request=CaOperationSerializer, responses=CaStatusSerializer)
    def post(self, request: Request) -> Response:
        if not namespace_access(request.user).can(Capability.MANAGE, None):
            raise NamespacePermissionDenied("Rotating the CA needs the 'manage' permission in all namespaces.", None)
        serializer = CaOperationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            if data["operation"] == "rotate":
                do_rotate_ca(request)
            else:
                do_retire_root(request, data["id"])
        except CaConfigurationError as exc:
            raise Conflict(str(exc)) from None
        return Response(ca_status())
