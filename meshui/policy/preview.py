"""What a change would do to real traffic, judged against the last hour the mesh observed.

Three questions an approver asks before saying yes:

- **Who gets cut off?** Every caller of the namespace's services, with its rate, whose
  verdict under the proposed authorization differs from today's. Metrics know the caller's
  workload (hence its SPIFFE identity and namespace) but not each request's method, path or
  JWT, so a rule that depends on those makes the verdict ``partial``, never a guess.
- **Where does traffic move?** For a split: each version's share of the service's traffic
  now and after, and the requests per second that move.
- **What would the breaker do?** For each endpoint group (workload) at its current error
  rate: how likely outlier detection is to eject it, and whether the in-flight limit sits
  below the concurrency already observed (then requests would be refused).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db.models import Min, Sum
from django.utils import timezone

from meshui.catalog.models import Workload
from meshui.policy.models import ChangeOperation, ChangeRequest, Policy, PolicyKind
from meshui.telemetry.graph import Totals, graph_buckets, summed_rows, window_bounds
from meshui.telemetry.models import Reporter

WINDOW_SECONDS = 3600
ALLOWED, DENIED, PARTIAL = "allowed", "denied", "partial"


def change_preview(change: ChangeRequest) -> dict[str, Any]:
    namespace = change.namespace.name
    start, end, resolution = window_bounds(timezone.now(), WINDOW_SECONDS)
    buckets = graph_buckets(start, end, resolution)
    # Rates over the time actually observed: a mesh watched for ten minutes has ten minutes of traffic,
    # and dividing it by an hour would understate every rate sixfold.
    first = buckets.aggregate(first=Min("start"))["first"]
    seconds = float(max(resolution, (end - first).total_seconds())) if first is not None else float(WINDOW_SECONDS)
    live = list(Policy.objects.filter(namespace=change.namespace))
    proposed = _after(live, change)
    traffic_items = [
        item for item in change.items.all() if item.kind == PolicyKind.TRAFFIC and item.operation != "delete"
    ]
    preview: dict[str, Any] = {
        "window_seconds": WINDOW_SECONDS,
        "observed_seconds": seconds,
        "window_end": end,
        "authorization": [],
        "splits": [],
        "breakers": [],
        "faults": [],
    }
    if any(item.kind != PolicyKind.TRAFFIC for item in change.items.all()):
        preview["authorization"] = _authorization_shift(buckets, namespace, live, proposed, seconds)
    for item in traffic_items:
        service = f"{item.service}.{namespace}"
        by_workload = _inbound_by_workload(buckets, service)
        spec = item.spec or {}
        if spec.get("split"):
            preview["splits"].append(_split_shift(change, item.service, service, spec["split"], by_workload, seconds))
        if spec.get("outlier_detection") or spec.get("circuit_breaker"):
            preview["breakers"].extend(_breaker_effects(service, spec, by_workload, seconds))
        if spec.get("fault"):
            preview["faults"].append(_fault_effect(service, spec["fault"], by_workload, seconds))
    return preview


# --- authorization ---------------------------------------------------------------------


def _after(live: list[Policy], change: ChangeRequest) -> list[dict[str, Any]]:
    """The namespace's policies as plain entries once the change is applied."""
    entries = {(p.kind, p.name): {"kind": p.kind, "service": p.service, "spec": p.spec, "name": p.name} for p in live}
    for item in change.items.all():
        if item.operation == ChangeOperation.DELETE:
            entries.pop((item.kind, item.name), None)
        else:
            entries[(item.kind, item.name)] = {
                "kind": item.kind,
                "service": item.service,
                "spec": item.spec,
                "name": item.name,
            }
    return list(entries.values())


def _callers(buckets: Any, namespace: str) -> list[tuple[str, str, str, Totals]]:
    """(caller namespace, caller workload, destination service name, totals) into ``namespace``, as callers
    reported them."""
    rows = summed_rows(
        buckets.filter(reporter=Reporter.OUTBOUND, destination_service__endswith=f".{namespace}"),
        "namespace",
        "source_workload",
        "destination_service",
    )
    return [(ns, workload, destination.rpartition(".")[0], totals) for (ns, workload, destination), totals in rows]


def _principal(namespace: str, workload: str, accounts: Mapping[tuple[str, str], str]) -> str:
    account = accounts.get((namespace, workload), "default")
    return f"spiffe://{settings.MESH_TRUST_DOMAIN}/ns/{namespace}/sa/{account}"


def _matches_any(patterns: Iterable[str], value: str) -> bool:
    return any(pattern in ("*", value) for pattern in patterns)


def _rule_verdict(rule: Mapping[str, Any], principal: str, namespace: str) -> str | None:
    """Whether a rule matches a caller: ``ALLOWED`` (it matches all its requests), ``PARTIAL`` (some
    requests, depending on what metrics do not record), or ``None``."""
    source = rule.get("from") or {}
    if "principals" in source and not _matches_any(source["principals"], principal):
        return None
    if "namespaces" in source and not _matches_any(source["namespaces"], namespace):
        return None
    operation = rule.get("to") or {}
    unknowable = "request_principals" in source or rule.get("when") or any(operation.get(k) for k in operation)
    return PARTIAL if unknowable else ALLOWED


def _policy_verdict(spec: Mapping[str, Any], principal: str, namespace: str) -> str | None:
    verdicts = {_rule_verdict(rule, principal, namespace) for rule in spec.get("rules", [])}
    if ALLOWED in verdicts:
        return ALLOWED
    return PARTIAL if PARTIAL in verdicts else None


def evaluate(policies: Iterable[Mapping[str, Any]], service: str, principal: str, namespace: str) -> str:
    """The verdict on a caller of ``service``: DENY policies first, then ALLOW, then the namespace default."""
    applying = [p for p in policies if p["kind"] == PolicyKind.AUTHORIZATION and p["service"] in ("", service)]
    default = next(
        (p["spec"]["default"] for p in policies if p["kind"] == PolicyKind.AUTHORIZATION_DEFAULT), "allow-all"
    )
    fallback = DENIED if default == "deny-all" else ALLOWED
    deny = {_policy_verdict(p["spec"], principal, namespace) for p in applying if p["spec"]["action"] == "DENY"}
    if ALLOWED in deny:
        return DENIED
    allow = {_policy_verdict(p["spec"], principal, namespace) for p in applying if p["spec"]["action"] == "ALLOW"}
    if PARTIAL in deny:
        return PARTIAL
    if ALLOWED in allow:
        return ALLOWED
    if PARTIAL in allow:
        return PARTIAL if fallback == DENIED else ALLOWED
    return fallback


def _authorization_shift(
    buckets: Any,
    namespace: str,
    live: list[Policy],
    proposed: list[dict[str, Any]],
    seconds: float,
) -> list[dict[str, Any]]:
    before = [{"kind": p.kind, "service": p.service, "spec": p.spec, "name": p.name} for p in live]
    callers = _callers(buckets, namespace)
    accounts = {
        (ns, name): account
        for ns, name, account in Workload.objects.filter(
            service__namespace__name__in={caller_ns for caller_ns, *_ in callers}
        ).values_list("service__namespace__name", "name", "service_account")
    }
    shifts = []
    for caller_namespace, workload, service, totals in callers:
        principal = _principal(caller_namespace, workload, accounts)
        now = evaluate(before, service, principal, caller_namespace)
        then = evaluate(proposed, service, principal, caller_namespace)
        if now != then:
            shifts.append(
                {
                    "source": f"{workload}.{caller_namespace}",
                    "source_principal": principal,
                    "destination": f"{service}.{namespace}",
                    "rps": round(totals.requests / seconds, 3),
                    "before": now,
                    "after": then,
                }
            )
    return sorted(shifts, key=lambda shift: -shift["rps"])


# --- traffic -----------------------------------------------------------------------------


def _inbound_by_workload(buckets: Any, service: str) -> dict[str, Totals]:
    inbound = buckets.filter(reporter=Reporter.INBOUND, destination_service=service)
    by_workload = {workload: totals for (workload,), totals in summed_rows(inbound, "destination_workload")}
    # summed_rows leaves out the latency sum, which Little's law needs for the mean in flight.
    for workload, spent in inbound.order_by().values_list("destination_workload").annotate(Sum("latency_sum_s")):
        if workload in by_workload:
            by_workload[workload].latency_sum_s = float(spent or 0.0)
    return by_workload


def _split_shift(
    change: ChangeRequest,
    service_name: str,
    service: str,
    split: list[Mapping[str, Any]],
    by_workload: Mapping[str, Totals],
    seconds: float,
) -> dict[str, Any]:
    versions = dict(
        Workload.objects.filter(service__namespace=change.namespace, service__name=service_name).values_list(
            "name", "labels__version"
        )
    )
    current: dict[str, int] = defaultdict(int)
    for workload, totals in by_workload.items():
        current[str(versions.get(workload) or "(unlabelled)")] += totals.requests
    total = sum(current.values())
    weights = {entry["version"]: entry["weight"] for entry in split}
    rows = []
    for version in sorted(current.keys() | weights.keys()):
        now = current.get(version, 0) / total if total else 0.0
        then = weights.get(version, 0) / 100
        rows.append(
            {
                "version": version,
                "current_share": round(now, 4),
                "proposed_share": round(then, 4),
                "rps_shift": round((then - now) * total / seconds, 3),
            }
        )
    return {"service": service, "rps": round(total / seconds, 3), "versions": rows}


def _breaker_effects(
    service: str, spec: Mapping[str, Any], by_workload: Mapping[str, Totals], seconds: float
) -> list[dict[str, Any]]:
    outlier = spec.get("outlier_detection") or {}
    consecutive = outlier.get("consecutive_5xx", 5 if outlier else 0)
    interval_s = outlier.get("interval_ms", 10_000) / 1000
    limit = (spec.get("circuit_breaker") or {}).get("max_requests")
    effects = []
    for workload, totals in sorted(by_workload.items()):
        error_rate = totals.errors / totals.requests if totals.requests else 0.0
        # A run of N failures in a row starts at a given request with probability (1 - e) e^N; over the
        # requests of one review interval, that many runs are expected.
        runs_per_interval = (totals.requests / seconds) * interval_s * (1 - error_rate) * error_rate**consecutive
        in_flight = totals.in_flight(seconds) if totals.latency_sum_s else None
        effects.append(
            {
                "service": service,
                "workload": workload,
                "rps": round(totals.requests / seconds, 3),
                "error_rate": round(error_rate, 4),
                "expected_ejections_per_interval": round(runs_per_interval, 4) if consecutive else None,
                "likely_ejected": bool(consecutive) and runs_per_interval >= 1.0,
                "mean_in_flight": in_flight,
                "max_requests": limit,
            }
        )
    return effects


def _fault_effect(
    service: str, fault: Mapping[str, Any], by_workload: Mapping[str, Totals], seconds: float
) -> dict[str, Any]:
    rps = sum(totals.requests for totals in by_workload.values()) / seconds
    abort = fault.get("abort") or {}
    delay = fault.get("delay") or {}
    return {
        "service": service,
        "rps": round(rps, 3),
        "aborted_rps": round(rps * abort.get("percent", 0) / 100, 3),
        "delayed_rps": round(rps * delay.get("percent", 0) / 100, 3),
    }
