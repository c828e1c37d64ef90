"""Applied policy reaching agents: per-agent snapshots, rollout progress per version, and the impact preview."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from django.utils import timezone

from meshui.catalog.models import Agent, AgentStatus, HealthStatus, Instance, Namespace, Service, Workload
from meshui.policy.models import ConfigVersion
from meshui.rollout.models import ConfigPush, MeshVersion, PushOutcome
from meshui.rollout.snapshots import build_agent_snapshot, build_agent_snapshots
from meshui.telemetry.models import EdgeBucket, Reporter
from proxyagent.protocol.v1 import snapshot_pb2
from tests.policy.flow import SPLIT_90_10, applied_change, open_change, traffic_item

pytestmark = pytest.mark.django_db


def agent_for(workload: Workload, number: int) -> Agent:
    instance = Instance.objects.create(
        workload=workload, address=f"10.0.0.{number}", port=15006, health=HealthStatus.HEALTHY
    )
    return Agent.objects.create(
        agent_id=f"{workload.name}-{number}",
        namespace=workload.service.namespace,
        instance=instance,
        admin_address=f"10.0.0.{number}:15000",
        config_version=0,
    )


@pytest.fixture
def agents(reviews: Service, alpha: Namespace) -> dict[str, Agent]:
    web = Service.objects.create(namespace=alpha, name="web")
    web_v1 = Workload.objects.create(service=web, name="web-v1", labels={"version": "v1"})
    v1, v2 = reviews.workloads.order_by("name")
    return {"web": agent_for(web_v1, 1), "reviews-v1": agent_for(v1, 2), "reviews-v2": agent_for(v2, 3)}


RESILIENT = {
    "load_balancer": {"policy": "consistent_hash", "hash_header": "X-User"},
    "timeout_ms": 2000,
    "retries": {"attempts": 2, "per_try_timeout_ms": 500, "retry_on": ["5xx", "reset"]},
    "circuit_breaker": {"max_requests": 100},
    "outlier_detection": {"consecutive_5xx": 3},
    **SPLIT_90_10,
    "fault": {"abort": {"percent": 1.5, "http_status": 503}},
}


def test_a_traffic_policy_reaches_every_callers_snapshot(cast: dict[str, Any], agents: dict[str, Agent]) -> None:
    applied = applied_change(cast, [traffic_item(RESILIENT)])
    snapshots = build_agent_snapshots(MeshVersion.current(), [agent.pk for agent in agents.values()])
    web_snapshot = snapshots[agents["web"].pk]
    assert web_snapshot.policy_version == applied["applied_version"] == 1
    reviews = next(d for d in web_snapshot.destinations if d.service == "reviews")
    assert reviews.load_balancer == snapshot_pb2.LOAD_BALANCER_CONSISTENT_HASH
    assert reviews.hash_header == "x-user"
    assert reviews.request_timeout_ms == 2000
    policy = reviews.traffic_policy
    assert policy.name == "alpha/reviews"
    assert (policy.retries.attempts, policy.retries.per_try_timeout_ms) == (2, 500)
    assert (policy.retries.on_5xx, policy.retries.on_reset, policy.retries.on_connect_failure) == (True, True, False)
    # Retries without a budget of their own get the default one: never unbounded.
    assert (policy.retry_budget.percent, policy.retry_budget.min_per_second) == (20.0, 10)
    assert policy.circuit_breaker.max_requests == 100
    assert policy.outlier_detection.consecutive_5xx == 3
    assert policy.outlier_detection.base_ejection_ms == 30_000
    assert [(s.version, s.weight) for s in policy.split] == [("v1", 90), ("v2", 10)]
    assert (policy.fault.abort_percent, policy.fault.abort_status) == (1.5, 503)
    web = next(d for d in web_snapshot.destinations if d.service == "web")
    assert not web.HasField("traffic_policy")


def test_each_agent_gets_only_its_own_inbound_policy(cast: dict[str, Any], agents: dict[str, Agent]) -> None:
    applied_change(
        cast,
        [
            {
                "operation": "create",
                "kind": "authorization",
                "name": "reviews-from-web",
                "service": "reviews",
                "spec": {"action": "ALLOW", "rules": [{"from": {"namespaces": ["alpha"]}, "to": {"methods": ["GET"]}}]},
            },
            {
                "operation": "create",
                "kind": "authorization_default",
                "name": "default",
                "spec": {"default": "deny-all"},
            },
            {"operation": "create", "kind": "peer_authentication", "name": "default", "spec": {"mode": "STRICT"}},
        ],
    )
    snapshots = build_agent_snapshots(MeshVersion.current(), [agent.pk for agent in agents.values()])
    reviews_inbound = snapshots[agents["reviews-v1"].pk].inbound
    web_inbound = snapshots[agents["web"].pk].inbound
    assert [p.id for p in reviews_inbound.authorization_policies] == ["alpha/reviews-from-web"]
    assert list(reviews_inbound.authorization_policies[0].rules[0].operation.methods) == ["GET"]
    assert list(web_inbound.authorization_policies) == []
    for inbound in (reviews_inbound, web_inbound):
        assert inbound.authorization_default == snapshot_pb2.AUTHORIZATION_DEFAULT_DENY_ALL
        assert inbound.peer_authentication == snapshot_pb2.PEER_AUTHENTICATION_MODE_STRICT
    # Agents of one service share one snapshot object: it is serialized once per push.
    assert snapshots[agents["reviews-v1"].pk] is snapshots[agents["reviews-v2"].pk]
    # Registration and heartbeats hand out the same per-agent snapshot.
    assert build_agent_snapshot(MeshVersion.current(), "reviews-v1-2") == snapshots[agents["reviews-v1"].pk]


def test_rollout_progress_counts_acked_pending_and_failed(cast: dict[str, Any], agents: dict[str, Agent]) -> None:
    applied = applied_change(cast, [traffic_item(SPLIT_90_10)])
    version = ConfigVersion.objects.get(number=applied["applied_version"])
    Agent.objects.filter(pk=agents["web"].pk).update(config_version=version.mesh_version)
    ConfigPush.objects.create(
        agent=agents["reviews-v2"], version=version.mesh_version, outcome=PushOutcome.REJECTED, detail="bad split"
    )
    body = cast["viewer"].get(f"/api/v1/config-versions/{version.number}/").json()
    rollout = body["rollout"]
    assert (rollout["acked"], rollout["pending"], rollout["failed"], rollout["total"]) == (1, 1, 1, 3)
    states = {row["agent_id"]: (row["state"], row["detail"]) for row in rollout["agents"]}
    assert states == {
        "web-v1-1": ("acked", ""),
        "reviews-v1-2": ("pending", ""),
        "reviews-v2-3": ("failed", "rejected: bad split"),
    }
    listed = cast["viewer"].get("/api/v1/config-versions/").json()["results"][0]["rollout"]
    assert "agents" not in listed
    assert listed["failed"] == 1
    # A disconnected agent no longer counts; one that caught up counts as acked.
    Agent.objects.filter(pk=agents["reviews-v1"].pk).update(status=AgentStatus.DISCONNECTED)
    Agent.objects.filter(pk=agents["reviews-v2"].pk).update(config_version=version.mesh_version + 1)
    rollout = cast["viewer"].get(f"/api/v1/config-versions/{version.number}/").json()["rollout"]
    assert (rollout["acked"], rollout["pending"], rollout["failed"], rollout["total"]) == (2, 0, 0, 2)


def bucket(reporter: str, namespace: str, source: str, destination: str, workload: str, **counts: Any) -> EdgeBucket:
    now = timezone.now()
    start = dt.datetime.fromtimestamp(int(now.timestamp()) // 10 * 10 - 600, tz=dt.UTC)
    return EdgeBucket.objects.create(
        start=start,
        resolution_s=10,
        reporter=reporter,
        namespace=namespace,
        source_workload=source,
        destination_service=destination,
        destination_workload=workload,
        status_class="2xx",
        **counts,
    )


def test_preview_shows_the_split_shift_and_the_callers_a_deny_would_cut_off(
    cast: dict[str, Any], agents: dict[str, Agent], beta: Namespace
) -> None:
    bucket(Reporter.INBOUND, "alpha", "web-v1", "reviews.alpha", "reviews-v1", requests=3600, errors=36)
    bucket(Reporter.OUTBOUND, "alpha", "web-v1", "reviews.alpha", "reviews-v1", requests=3600)
    intruder = Workload.objects.create(service=Service.objects.create(namespace=beta, name="batch"), name="batch-v1")
    bucket(Reporter.OUTBOUND, "beta", intruder.name, "reviews.alpha", "reviews-v1", requests=720)
    change = open_change(
        cast["editor"],
        [
            traffic_item({**SPLIT_90_10, "outlier_detection": {"consecutive_5xx": 1, "interval_ms": 10_000}}),
            {
                "operation": "create",
                "kind": "authorization",
                "name": "alpha-only",
                "service": "reviews",
                "spec": {"action": "ALLOW", "rules": [{"from": {"namespaces": ["alpha"]}}]},
            },
            {
                "operation": "create",
                "kind": "authorization_default",
                "name": "default",
                "spec": {"default": "deny-all"},
            },
        ],
    )
    preview = cast["approver"].get(f"/api/v1/change-requests/{change['id']}/preview/").json()
    # The buckets are ten minutes old: rates are over the time observed since, not over the whole hour.
    seconds = preview["observed_seconds"]
    assert 600 <= seconds <= 620
    assert preview["authorization"] == [
        {
            "source": "batch-v1.beta",
            "source_principal": "spiffe://cluster.local/ns/beta/sa/default",
            "destination": "reviews.alpha",
            "rps": round(720 / seconds, 3),
            "before": "allowed",
            "after": "denied",
        }
    ]
    [split] = preview["splits"]
    assert split["service"] == "reviews.alpha"
    assert split["rps"] == round(3600 / seconds, 3)
    shares = {
        row["version"]: (row["current_share"], row["proposed_share"], row["rps_shift"]) for row in split["versions"]
    }
    shift = round(0.1 * 3600 / seconds, 3)
    assert shares == {"v1": (1.0, 0.9, -shift), "v2": (0.0, 0.1, shift)}
    [breaker] = preview["breakers"]
    # 6 rps at 1 % errors with ejection after one 5xx: about 0.6 ejections per 10 s interval, so
    # not likely ejected in a given interval.
    assert breaker["workload"] == "reviews-v1"
    assert breaker["error_rate"] == 0.01
    assert breaker["expected_ejections_per_interval"] == pytest.approx(3600 / seconds * 10 * 0.99 * 0.01, abs=0.001)
    assert breaker["likely_ejected"] is False


def test_endpoints_name_the_identity_their_sidecar_presents(agents: dict[str, Agent]) -> None:
    Workload.objects.filter(name="reviews-v2").update(service_account="reviews")
    snapshot = build_agent_snapshots(MeshVersion.current(), [agents["web"].pk])[agents["web"].pk]
    reviews = next(d for d in snapshot.destinations if d.service == "reviews")
    assert sorted(e.identity for e in reviews.endpoints) == [
        "spiffe://cluster.local/ns/alpha/sa/default",
        "spiffe://cluster.local/ns/alpha/sa/reviews",
    ]
    assert x509.load_pem_x509_certificates(snapshot.trust_bundle_pem)
