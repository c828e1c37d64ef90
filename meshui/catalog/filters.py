from django_filters import rest_framework as filters

from meshui.catalog.models import Agent, Instance, Service, Workload


class ServiceFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")
    name = filters.CharFilter()
    name__contains = filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Service
        fields = ["namespace", "name"]


class WorkloadFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="service__namespace__name")

    class Meta:
        model = Workload
        fields = ["namespace", "service", "name", "service_account"]


class InstanceFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="workload__service__namespace__name")
    service = filters.NumberFilter(field_name="workload__service_id")

    class Meta:
        model = Instance
        fields = ["namespace", "service", "workload", "health", "address"]


class AgentFilter(filters.FilterSet):
    namespace = filters.CharFilter(field_name="namespace__name")

    class Meta:
        model = Agent
        fields = ["namespace", "status", "agent_id"]
