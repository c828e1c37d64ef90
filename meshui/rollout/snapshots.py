"""Building the protobuf ``Snapshot`` each agent receives from the catalog and live policy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from django.conf import settings
from django.utils import timezone

from meshui.catalog.models import Agent, HealthStatus, Instance, LoadBalancer, Service
from meshui.identity.issuance import bundle_pem, ca_store
from meshui.identity.spiffe import SpiffeId
from meshui.policy.compile import LOAD_BALANCERS, apply_traffic_policy, inbound_policy
from meshui.policy.models import ConfigVersion, JwksDocument, Policy, PolicyKind
from proxyagent.protocol.v1 import snapshot_pb2


def _destinations() -> list[snapshot_pb2.Destination]:
    """Every service with its healthy endpoints and its traffic policy.

    Services without healthy instances are still listed, so a caller's agent
    can answer ``no_healthy_upstream`` rather than ``no_route``. Until
    authorization narrows who may call what, every agent may call every service.
    """
    endpoints: dict[int, list[snapshot_pb2.Endpoint]] = defaultdict(list)
    healthy = (
        Instance.objects.filter(health=HealthStatus.HEALTHY)
        .select_related("workload__service__namespace")
        .order_by("id")
    )
    for instance in healthy:
        workload = instance.workload
        endpoints[instance.workload.service_id].append(
            snapshot_pb2.Endpoint(
                address=instance.address,
                port=instance.port,
                workload=instance.workload.name,
                labels=instance.workload.labels,
                weight=1,
                health=snapshot_pb2.HEALTH_STATUS_HEALTHY,
                identity=str(
                    SpiffeId(settings.MESH_TRUST_DOMAIN, workload.service.namespace.name, workload.service_account)
                ),
            )
        )
    traffic = {
        (policy.namespace_id, policy.service): policy
        for policy in Policy.objects.filter(kind=PolicyKind.TRAFFIC).select_related("namespace")
    }
    destinations = []
    for service in Service.objects.select_related("namespace").order_by("namespace__name", "name"):
        destination = snapshot_pb2.Destination(
            service=service.name,
            namespace=service.namespace.name,
            load_balancer=LOAD_BALANCERS[LoadBalancer(service.load_balancer)],
            endpoints=endpoints.get(service.pk, []),
        )
        policy = traffic.get((service.namespace_id, service.name))
        if policy is not None:
            apply_traffic_policy(destination, policy)
        destinations.append(destination)
    return destinations


def build_snapshot(version: int, namespace_id: int | None = None, service: str = "") -> snapshot_pb2.Snapshot:
    """The snapshot of ``version`` for the agents of ``service`` in ``namespace_id``.

    Without a namespace (an agent whose instance is gone) the inbound policy is empty.
    """
    return _snapshots(version, {(namespace_id, service)})[(namespace_id, service)]


def _snapshots(
    version: int, groups: Collection[tuple[int | None, str]]
) -> dict[tuple[int | None, str], snapshot_pb2.Snapshot]:
    destinations = _destinations()
    policy_version = ConfigVersion.latest_number()
    trust_bundle = bundle_pem(ca_store(), timezone.now())
    jwks = dict(JwksDocument.objects.exclude(document=None).values_list("uri", "document"))
    by_namespace: dict[int, list[Policy]] = defaultdict(list)
    namespaces = {namespace_id for namespace_id, _ in groups if namespace_id is not None}
    inbound_kinds = [
        PolicyKind.AUTHORIZATION,
        PolicyKind.AUTHORIZATION_DEFAULT,
        PolicyKind.PEER_AUTHENTICATION,
        PolicyKind.REQUEST_AUTHENTICATION,
    ]
    for policy in Policy.objects.filter(namespace_id__in=namespaces, kind__in=inbound_kinds).select_related(
        "namespace"
    ):
        by_namespace[policy.namespace_id].append(policy)
    return {
        (namespace_id, service): snapshot_pb2.Snapshot(
            version=version,
            destinations=destinations,
            inbound=inbound_policy(
                by_namespace.get(namespace_id, []) if namespace_id is not None else [], service, jwks
            ),
            policy_version=policy_version,
            trust_bundle_pem=trust_bundle,
        )
        for namespace_id, service in groups
    }


def _agent_groups(agent_pks: Collection[int]) -> dict[int, tuple[int | None, str]]:
    rows = Agent.objects.filter(pk__in=agent_pks).values_list("pk", "namespace_id", "instance__workload__service__name")
    return {pk: (namespace_id, service or "") for pk, namespace_id, service in rows}


def build_agent_snapshots(version: int, agent_pks: Collection[int]) -> dict[int, snapshot_pb2.Snapshot]:
    """The snapshot of ``version`` each agent (by primary key) should hold: each gets only what it needs.

    Agents of one service share one snapshot object, so a push serializes each distinct snapshot once.
    """
    groups = _agent_groups(agent_pks)
    snapshots = _snapshots(version, set(groups.values()))
    return {pk: snapshots[group] for pk, group in groups.items()}


def build_agent_snapshot(version: int, agent_id: str) -> snapshot_pb2.Snapshot:
    """The snapshot for one agent, by its agent id (for registration and heartbeats)."""
    row = Agent.objects.filter(agent_id=agent_id).values_list("namespace_id", "instance__workload__service__name")
    found = row.first()
    if found is None:
        return build_snapshot(version)
    namespace_id, service = found
    return build_snapshot(version, namespace_id, service or "")
