"""REST endpoints for policy, change requests and config versions. Thin: the rules live in ``changes.py``."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces
from meshui.api.permissions import NamespaceRolePermission
from meshui.api.viewsets import NamespacedModelViewSet
from meshui.catalog.models import Agent, Namespace
from meshui.policy import changes
from meshui.policy.diff import change_diff
from meshui.policy.models import Approval, ApprovalRule, ChangeRequest, ChangeState, ConfigVersion, Policy, PolicyKind
from meshui.policy.preview import change_preview
from meshui.policy.progress import rollout_progress
from meshui.policy.serializers import (
    ApplySerializer,
    ApprovalRuleSerializer,
    ApproveSerializer,
    ChangeItemInputSerializer,
    ChangeRequestEditSerializer,
    ChangeRequestSerializer,
    CommentSerializer,
    ConfigVersionSerializer,
    PolicySerializer,
    RejectSerializer,
    RollbackSerializer,
    ValidationResultSerializer,
)

_CHANGE_THROUGH = "Live policy changes only through a change request: POST /api/v1/change-requests/."


class PolicyFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")

    class Meta:
        model = Policy
        fields = ["namespace", "name", "service"]


class PolicyViewSet(viewsets.ReadOnlyModelViewSet[Policy]):
    """Live policy of one kind, read-only: every write goes through a change request."""

    kind: PolicyKind = PolicyKind.TRAFFIC
    serializer_class = PolicySerializer
    permission_classes = [NamespaceRolePermission]
    read_capability = Capability.VIEW
    filterset_class = PolicyFilter
    ordering_fields = ["name", "updated_at"]

    def get_queryset(self) -> QuerySet[Policy]:
        policies = Policy.objects.filter(kind=self.kind).select_related("namespace", "version")
        return restrict_to_namespaces(policies, self.request.user, self.read_capability)

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise MethodNotAllowed(request.method or "", detail=_CHANGE_THROUGH)


class TrafficPolicyViewSet(PolicyViewSet):
    kind = PolicyKind.TRAFFIC


class AuthorizationPolicyViewSet(PolicyViewSet):
    kind = PolicyKind.AUTHORIZATION


class PeerAuthenticationViewSet(PolicyViewSet):
    kind = PolicyKind.PEER_AUTHENTICATION


class AuthorizationDefaultViewSet(PolicyViewSet):
    kind = PolicyKind.AUTHORIZATION_DEFAULT


class RequestAuthenticationViewSet(PolicyViewSet):
    kind = PolicyKind.REQUEST_AUTHENTICATION


class ChangeRequestFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")
    author = filters.CharFilter(field_name="author__username")
    awaiting = filters.ChoiceFilter(
        choices=[("me", "me")],
        method="filter_awaiting",
        label="'me': submitted changes I may approve and have not approved as they stand (my inbox).",
    )

    class Meta:
        model = ChangeRequest
        fields = ["namespace", "state", "author", "awaiting"]

    def filter_awaiting(self, queryset: QuerySet[ChangeRequest], name: str, value: str) -> QuerySet[ChangeRequest]:
        user = self.request.user
        approvable = restrict_to_namespaces(queryset, user, Capability.APPROVE)
        mine = Approval.objects.filter(change=OuterRef("pk"), approver=user, digest=OuterRef("digest"))
        return (
            approvable.filter(state=ChangeState.PENDING, expires_at__gt=timezone.now())
            .exclude(author=user)
            .exclude(Exists(mine))
        )


class ChangeRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[ChangeRequest]
):
    """Proposed policy changes and their review. Edit with PATCH; decide with the POST actions."""

    serializer_class = ChangeRequestSerializer
    permission_classes = [NamespaceRolePermission]
    read_capability = Capability.VIEW
    # Seeing the change is enough to reach an action; each action then checks its own capability
    # (propose, approve, manage), with the four-eyes rules, in ``changes.py``.
    write_capability = Capability.VIEW
    filterset_class = ChangeRequestFilter
    ordering_fields = ["created_at", "updated_at", "expires_at"]

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        queryset = ChangeRequest.objects.select_related(
            "namespace", "author", "decided_by", "restores", "applied_version"
        ).prefetch_related("items", "approvals__approver", "approvals__change", "comments__author")
        return restrict_to_namespaces(queryset, self.request.user, self.read_capability)

    def write_scope(self, obj: ChangeRequest) -> int:
        return obj.namespace_id

    def _respond(self, change: ChangeRequest, code: int = status.HTTP_200_OK) -> Response:
        return Response(ChangeRequestSerializer(self.get_queryset().get(pk=change.pk)).data, status=code)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = ChangeRequestSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        change = changes.do_open_change(
            request, data["namespace"], data["title"], data["description"], serializer.proposed_items()
        )
        return self._respond(change, status.HTTP_201_CREATED)

    @extend_schema(request=ChangeRequestEditSerializer, responses=ChangeRequestSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        change = self.get_object()
        context = {**self.get_serializer_context(), "change": change}
        serializer = ChangeRequestEditSerializer(data=request.data, context=context)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        items = data.get("items")
        proposed = [ChangeItemInputSerializer().to_proposed(item) for item in items] if items is not None else None
        changed = changes.do_edit_change(
            request, change, title=data.get("title"), description=data.get("description"), items=proposed
        )
        return self._respond(changed)

    @extend_schema(request=ChangeRequestSerializer, responses=ValidationResultSerializer)
    @action(detail=False, methods=["post"])
    def validate(self, request: Request) -> Response:
        """Check a change request's items as creating it would, without saving anything: 400 with the
        field errors, or 200 with each item's warnings."""
        serializer = ChangeRequestSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        namespace = serializer.validated_data["namespace"]
        changes.require_propose(request, namespace)
        checked = changes.check_items(namespace, serializer.proposed_items())
        return Response(
            {
                "items": [
                    {"warnings": [{"code": w.code, "field": w.field, "message": w.message} for w in item.warnings]}
                    for item in checked
                ]
            }
        )

    @extend_schema(request=None, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(changes.do_submit(request, self.get_object()))

    @extend_schema(request=ApproveSerializer, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        change = self.get_object()
        serializer = ApproveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return self._respond(
            changes.do_approve(request, change, seen_digest=data.get("digest"), comment=data["comment"])
        )

    @extend_schema(request=RejectSerializer, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        change = self.get_object()
        serializer = RejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._respond(changes.do_reject(request, change, reason=serializer.validated_data["reason"]))

    @extend_schema(request=None, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(changes.do_withdraw(request, self.get_object()))

    @extend_schema(request=ApplySerializer, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def apply(self, request: Request, pk: str | None = None) -> Response:
        change = self.get_object()
        serializer = ApplySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data["emergency_reason"]
        return self._respond(changes.do_apply(request, change, emergency_reason=reason))

    @extend_schema(request=CommentSerializer, responses=CommentSerializer)
    @action(detail=True, methods=["post"])
    def comments(self, request: Request, pk: str | None = None) -> Response:
        change = self.get_object()
        serializer = CommentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = changes.do_comment(request, change, serializer.validated_data["body"])
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk: str | None = None) -> Response:
        """Each item's live spec beside the proposed one, with the paths that differ."""
        return Response({"digest": (change := self.get_object()).digest, "items": change_diff(change)})

    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """What the change would do to the last hour's observed traffic."""
        return Response(change_preview(self.get_object()))


class ConfigVersionFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")
    since = filters.IsoDateTimeFilter(field_name="applied_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="applied_at", lookup_expr="lt")

    class Meta:
        model = ConfigVersion
        fields = ["namespace", "since", "until"]


class ConfigVersionViewSet(viewsets.ReadOnlyModelViewSet[ConfigVersion]):
    """Applied versions of the mesh's policy, newest first, each with its rollout to the agents."""

    serializer_class = ConfigVersionSerializer
    permission_classes = [NamespaceRolePermission]
    read_capability = Capability.VIEW
    filterset_class = ConfigVersionFilter
    lookup_field = "number"
    # Rolling back opens a change request, which checks 'propose' itself.
    write_capability = Capability.VIEW

    def write_scope(self, obj: ConfigVersion) -> int:
        return obj.namespace_id

    def get_queryset(self) -> QuerySet[ConfigVersion]:
        versions = ConfigVersion.objects.select_related("namespace", "applied_change")
        return restrict_to_namespaces(versions, self.request.user, self.read_capability)

    def _agents(self) -> QuerySet[Agent]:
        return restrict_to_namespaces(Agent.objects.all(), self.request.user, Capability.VIEW)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        versions = {version.number: version for version in self.get_queryset()}
        rows = response.data["results"] if isinstance(response.data, dict) else response.data
        for row in rows:
            row["rollout"] = rollout_progress(versions[row["number"]], self._agents(), per_agent=False)
        return response

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        data = dict(ConfigVersionSerializer(version).data)
        access = namespace_access(request.user)
        visible = access.namespaces_with(Capability.VIEW)
        names = None
        if visible is not None:
            names = set(Namespace.objects.filter(pk__in=visible).values_list("name", flat=True))
        # A version's document holds every namespace's policy; show only what the reader may see.
        data["document"] = [entry for entry in version.document if names is None or entry["namespace"] in names]
        data["rollout"] = rollout_progress(version, self._agents(), per_agent=True)
        return Response(data)

    @extend_schema(request=RollbackSerializer, responses=ChangeRequestSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, number: str | None = None) -> Response:
        """Open a change request that restores a namespace's policy to this version (same approval rules)."""
        version = self.get_object()
        serializer = RollbackSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        namespace = serializer.validated_data.get("namespace") or version.namespace
        change = changes.do_open_rollback(request, version, namespace)
        return Response(ChangeRequestSerializer(change).data, status=status.HTTP_201_CREATED)


class ApprovalRuleViewSet(NamespacedModelViewSet):
    """How many approvals each namespace's changes need; set by the namespace's admins."""

    queryset = ApprovalRule.objects.select_related("namespace")
    serializer_class = ApprovalRuleSerializer
    write_capability = Capability.MANAGE

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        return validated_data["namespace"].pk  # type: ignore[no-any-return]
