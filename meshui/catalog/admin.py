from django.contrib import admin

from meshui.catalog.models import Agent, Instance, Namespace, Service, Workload


@admin.register(Namespace)
class NamespaceAdmin(admin.ModelAdmin[Namespace]):
    list_display = ["name", "created_at"]
    search_fields = ["name"]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin[Service]):
    list_display = ["name", "namespace", "created_at"]
    list_filter = ["namespace"]
    search_fields = ["name"]


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin[Workload]):
    list_display = ["name", "service", "service_account"]
    list_select_related = ["service__namespace"]
    search_fields = ["name", "service__name"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin[Instance]):
    list_display = ["address", "port", "workload", "health", "last_seen"]
    list_filter = ["health"]
    list_select_related = ["workload__service__namespace"]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin[Agent]):
    list_display = ["agent_id", "namespace", "status", "config_version", "last_heartbeat"]
    list_filter = ["status", "namespace"]
    search_fields = ["agent_id"]
