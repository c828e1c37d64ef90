from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from meshui.accounts.models import ApiToken, RoleBinding, namespace_access
from meshui.accounts.roles import Capability
from meshui.accounts.serializers import (
    ApiTokenSerializer,
    GroupSerializer,
    MeSerializer,
    RoleBindingSerializer,
    UserSerializer,
)
from meshui.api.errors import NamespacePermissionDenied
from meshui.api.permissions import HasGlobalCapability
from meshui.api.viewsets import AuditedModelViewSet, NamespacedModelViewSet
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction
from meshui.catalog.models import Namespace

User = get_user_model()


class UserViewSet(AuditedModelViewSet):
    """Users. Only admins of all namespaces manage them."""

    queryset = User.objects.prefetch_related("groups").order_by("username")
    serializer_class = UserSerializer
    permission_classes = [HasGlobalCapability]
    required_capability = Capability.MANAGE
    filterset_fields = ["username", "is_active"]
    ordering_fields = ["username", "date_joined", "last_login"]

    def check_object_permissions(self, request: Request, obj: Any) -> None:
        super().check_object_permissions(request, obj)
        # A superuser can do anything in /admin/; only another superuser may change or delete one.
        if request.method not in ("GET", "HEAD", "OPTIONS") and obj.is_superuser and not request.user.is_superuser:
            raise NamespacePermissionDenied("Only a superuser may change a superuser.", None)


class GroupViewSet(AuditedModelViewSet):
    queryset = Group.objects.order_by("name")
    serializer_class = GroupSerializer
    permission_classes = [HasGlobalCapability]
    required_capability = Capability.MANAGE
    filterset_fields = ["name"]


class RoleBindingViewSet(NamespacedModelViewSet):
    """Role grants. A namespace's admins grant roles there; bindings for all namespaces need a global admin.

    Bindings are granted and withdrawn, never edited, so each change has one clear audit event.
    """

    queryset = RoleBinding.objects.select_related("user", "group", "namespace", "created_by")
    serializer_class = RoleBindingSerializer
    read_capability = Capability.MANAGE
    write_capability = Capability.MANAGE
    http_method_names = ["get", "post", "delete", "head", "options"]
    filterset_fields = ["role", "user__username", "group__name", "namespace__name"]

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        namespace: Namespace | None = validated_data.get("namespace")
        return namespace.pk if namespace is not None else None

    def save_kwargs(self) -> dict[str, Any]:
        return {"created_by": self.request.user}


class ApiTokenViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[ApiToken],
):
    """Personal API tokens. Everyone manages their own; global admins see and revoke anyone's.

    Deleting a token revokes it: the row stays, so the audit log and the
    token list still show when it was used last.
    """

    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["name", "user__username"]
    ordering_fields = ["created_at", "last_used_at", "expires_at"]

    def get_queryset(self) -> QuerySet[ApiToken]:
        queryset = ApiToken.objects.select_related("user")
        if not self.request.user.is_authenticated:
            return queryset.none()
        if namespace_access(self.request.user).can(Capability.MANAGE, None):
            return queryset
        return queryset.filter(user=self.request.user)

    def perform_create(self, serializer: Any) -> None:
        if isinstance(self.request.auth, ApiToken):
            # Otherwise a token about to expire or be revoked could mint its own successor.
            raise NamespacePermissionDenied("Create tokens from a logged-in session, not with another token.", None)
        with transaction.atomic():
            token = serializer.save()
            do_record_change(self.request, AuditAction.CREATE, token, namespace_id=None, after=serializer.data)

    def perform_destroy(self, instance: ApiToken) -> None:
        with transaction.atomic():
            before = ApiTokenSerializer(instance).data
            instance.revoke()
            do_record_change(
                self.request,
                AuditAction.REVOKE,
                instance,
                namespace_id=None,
                before=before,
                after=ApiTokenSerializer(instance).data,
            )


class MeView(generics.GenericAPIView[Any]):
    """Who the caller is and what they may do where: the dashboard shapes itself from this."""

    permission_classes = [IsAuthenticated]
    serializer_class = MeSerializer

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        access = namespace_access(request.user)
        names = dict(Namespace.objects.filter(pk__in=access.by_namespace).values_list("pk", "name"))
        data = {
            "username": request.user.get_username(),
            "is_superuser": bool(getattr(request.user, "is_superuser", False)),
            "capabilities_everywhere": sorted(access.everywhere),
            "namespaces": [
                {"namespace": names[pk], "capabilities": sorted(access.capabilities_in(pk))}
                for pk in sorted(access.by_namespace, key=lambda pk: names.get(pk, ""))
                if pk in names
            ],
        }
        return Response(MeSerializer(data).data)
