"""Object-level checks by role and namespace."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.api.errors import NamespacePermissionDenied


class NamespaceRolePermission(BasePermission):
    """Reads need the view's ``read_capability`` in the object's namespace; writes its ``write_capability``.

    Lists are already narrowed by the view's queryset, so an object outside
    the user's namespaces is a 404 before this is asked.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        capability: Capability = view.read_capability if request.method in SAFE_METHODS else view.write_capability
        namespace_id = view.write_scope(obj) if request.method not in SAFE_METHODS else obj.namespace_pk
        if namespace_access(request.user).can(capability, namespace_id):
            return True
        raise NamespacePermissionDenied(f"You need the '{capability}' permission here.", namespace_id)


class HasGlobalCapability(BasePermission):
    """The view's ``required_capability`` held in every namespace (a binding without a namespace)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        capability: Capability = view.required_capability
        if namespace_access(request.user).can(capability, None):
            return True
        raise NamespacePermissionDenied(f"You need the '{capability}' permission in all namespaces.", None)
