"""Viewsets that audit every write and scope every query to the user's namespaces."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.db.models import QuerySet
from rest_framework import serializers, viewsets

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces
from meshui.api.errors import NamespacePermissionDenied
from meshui.api.permissions import NamespaceRolePermission
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction
from meshui.rollout.actions import do_bump_version


class AuditedModelViewSet(viewsets.ModelViewSet[Any]):
    """Each create, update and delete runs in one transaction with its audit event.

    ``affects_snapshots`` marks models the agents' snapshots are built from: a
    write to them bumps the mesh config version, in the same transaction.
    """

    affects_snapshots = False

    def _after_write(self) -> None:
        if self.affects_snapshots:
            do_bump_version()

    def audit_namespace_id(self, obj: Any) -> int | None:
        return getattr(obj, "namespace_pk", None)

    def authorize_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        """Raise ``PermissionDenied`` if the validated object may not be created. Open by default."""

    def save_kwargs(self) -> dict[str, Any]:
        """Values the server sets on a new object (who created it, say), beyond what the client sent."""
        return {}

    def snapshot(self, obj: Any) -> Any:
        return self.get_serializer_class()(obj, context=self.get_serializer_context()).data

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        self.authorize_create(serializer)
        with transaction.atomic():
            obj = serializer.save(**self.save_kwargs())
            do_record_change(
                self.request, AuditAction.CREATE, obj, namespace_id=self.audit_namespace_id(obj), after=serializer.data
            )
            self._after_write()

    def perform_update(self, serializer: serializers.BaseSerializer[Any]) -> None:
        before = self.snapshot(serializer.instance)
        with transaction.atomic():
            obj = serializer.save()
            do_record_change(
                self.request,
                AuditAction.UPDATE,
                obj,
                namespace_id=self.audit_namespace_id(obj),
                before=before,
                after=serializer.data,
            )
            self._after_write()

    def perform_destroy(self, instance: models.Model) -> None:
        before = self.snapshot(instance)
        with transaction.atomic():
            # Recorded first, while the object still has its primary key; a
            # delete that fails rolls the event back with it.
            do_record_change(
                self.request,
                AuditAction.DELETE,
                instance,
                namespace_id=self.audit_namespace_id(instance),
                before=before,
            )
            instance.delete()
            self._after_write()


class NamespacedModelViewSet(AuditedModelViewSet):
    """CRUD on a model that lives in a namespace (its ``namespace_lookup`` says how to reach it).

    Reads need ``read_capability`` in the object's namespace and writes need
    ``write_capability``; subclasses name where a new object lands with
    ``target_namespace_id``.
    """

    permission_classes = [NamespaceRolePermission]
    read_capability = Capability.VIEW
    write_capability = Capability.EDIT

    def get_queryset(self) -> QuerySet[Any]:
        return restrict_to_namespaces(super().get_queryset(), self.request.user, self.read_capability)

    def target_namespace_id(self, validated_data: dict[str, Any]) -> int | None:
        """The namespace a new object will belong to; ``None`` means all namespaces (a global object)."""
        raise NotImplementedError

    def write_scope(self, obj: Any) -> int | None:
        """The namespace in which a change to ``obj`` is authorized; ``None`` asks for a global grant."""
        return obj.namespace_pk  # type: ignore[no-any-return]

    def authorize_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        namespace_id = self.target_namespace_id(serializer.validated_data)
        if not namespace_access(self.request.user).can(self.write_capability, namespace_id):
            where = "here" if namespace_id is not None else "in all namespaces"
            raise NamespacePermissionDenied(f"You need the '{self.write_capability}' permission {where}.", namespace_id)
