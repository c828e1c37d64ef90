"""Join tokens (admins) and the record of issued certificates (viewers)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces
from meshui.api.permissions import NamespaceRolePermission
from meshui.api.viewsets import NamespacedModelViewSet
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction
from meshui.identity import ca_changes
from meshui.identity.actions import ca_status
from meshui.identity.models import CaChange, IssuedCertificate, JoinToken
from meshui.identity.serializers import (
    CaChangeRejectSerializer,
    CaChangeRequestSerializer,
    CaChangeSerializer,
    CaStatusSerializer,
    IssuedCertificateSerializer,
    JoinTokenSerializer,
)


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
    """The roots agents trust (public material only). Changes to them go through ``/api/v1/ca-changes/``."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=CaStatusSerializer)
    def get(self, request: Request) -> Response:
        return Response(ca_status())


class CaChangeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[CaChange]):
    """Rotations of the CA and retirements of roots: requested by an admin of all namespaces, approved by
    someone else who may approve in all of them, applied with the last approval. POST with
    ``emergency_reason`` applies at once (admins; audited and flagged)."""

    serializer_class = CaChangeSerializer
    permission_classes = [IsAuthenticated]
    queryset = CaChange.objects.select_related("requested_by", "decided_by").prefetch_related("approvals__approver")

    def get_queryset(self) -> QuerySet[CaChange]:
        # Those who may act on CA changes see them: admins and approvers of every namespace.
        access = namespace_access(self.request.user)
        if not (access.can(Capability.MANAGE, None) or access.can(Capability.APPROVE, None)):
            return self.queryset.none()
        return self.queryset.all()

    def _respond(self, change: CaChange, code: int = status.HTTP_200_OK) -> Response:
        return Response(CaChangeSerializer(self.get_queryset().get(pk=change.pk)).data, status=code)

    @extend_schema(request=CaChangeRequestSerializer, responses=CaChangeSerializer)
    def create(self, request: Request) -> Response:
        serializer = CaChangeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        root = data.get("id", "")
        if "emergency_reason" in data:
            change = ca_changes.do_apply_ca_change_now(request, data["operation"], root, data["emergency_reason"])
        else:
            change = ca_changes.do_request_ca_change(request, data["operation"], root, data["reason"])
        return self._respond(change, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=CaChangeSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(ca_changes.do_approve_ca_change(request, self.get_object()))

    @extend_schema(request=CaChangeRejectSerializer, responses=CaChangeSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        serializer = CaChangeRejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data["reason"]
        return self._respond(ca_changes.do_reject_ca_change(request, self.get_object(), reason))

    @extend_schema(request=None, responses=CaChangeSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(ca_changes.do_withdraw_ca_change(request, self.get_object()))
