from django.contrib import admin
from django.http import HttpRequest

from meshui.accounts.models import ApiToken, RoleBinding


@admin.register(RoleBinding)
class RoleBindingAdmin(admin.ModelAdmin[RoleBinding]):
    list_display = ["id", "user", "group", "role", "namespace", "created_at"]
    list_filter = ["role", "namespace"]
    raw_id_fields = ["user", "created_by"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    """Tokens are issued through the API (the secret is shown once there); here they are only listed or revoked."""

    list_display = ["name", "user", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
