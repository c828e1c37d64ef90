"""Building the protobuf ``Snapshot`` an agent receives from the catalog."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from meshui.catalog.models import HealthStatus, Instance, LoadBalancer, Service
from proxyagent.protocol.v1 import snapshot_pb2

_LOAD_BALANCERS = {
    LoadBalancer.ROUND_ROBIN: snapshot_pb2.LOAD_BALANCER_ROUND_ROBIN,
    LoadBalancer.LEAST_REQUEST: snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST,
}


def build_snapshot(version: int) -> snapshot_pb2.Snapshot:
    """Every service with its healthy endpoints, as of ``version``.

    Services without healthy instances are still listed, so a caller's agent
    can answer ``no_healthy_upstream`` rather than ``no_route``. Until
    authorization policy exists every agent may call every service, so all
    agents get the same snapshot.
    """
    endpoints: dict[int, list[snapshot_pb2.Endpoint]] = defaultdict(list)
    healthy = Instance.objects.filter(health=HealthStatus.HEALTHY).select_related("workload").order_by("id")
    for instance in healthy:
        endpoints[instance.workload.service_id].append(
            snapshot_pb2.Endpoint(
                address=instance.address,
                port=instance.port,
                workload=instance.workload.name,
                labels=instance.workload.labels,
                weight=1,
                health=snapshot_pb2.HEALTH_STATUS_HEALTHY,
            )
        )
    destinations = [
        snapshot_pb2.Destination(
            service=service.name,
            namespace=service.namespace.name,
            load_balancer=_LOAD_BALANCERS[LoadBalancer(service.load_balancer)],
            endpoints=endpoints.get(service.pk, []),
        )
        for service in Service.objects.select_related("namespace").order_by("namespace__name", "name")
    ]
    return snapshot_pb2.Snapshot(version=version, destinations=destinations)


def build_agent_snapshots(version: int, agent_pks: Collection[int]) -> dict[int, snapshot_pb2.Snapshot]:
    """The snapshot of ``version`` each agent (by primary key) should hold: each gets only what it needs."""
    shared = build_snapshot(version)
    return {pk: shared for pk in agent_pks}
