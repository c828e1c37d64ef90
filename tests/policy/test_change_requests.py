"""Change requests through the REST API: the four-eyes rules, digests, expiry, apply and rollback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from meshui.audit.models import AuditAction, AuditEvent
from meshui.catalog.models import Service
from meshui.policy.changes import do_expire_changes
from meshui.policy.models import ChangeRequest, ConfigVersion, ImmutableVersionError, Policy, PolicyKind
from meshui.rollout.models import MeshVersion
from tests.policy.flow import SPLIT_90_10, act, applied_change, open_change, traffic_item

pytestmark = pytest.mark.django_db


def submitted(cast: dict[str, Any], spec: dict[str, Any] | None = None) -> Any:
    change = open_change(cast["editor"], [traffic_item(spec or SPLIT_90_10)])
    response = act(cast["editor"], change["id"], "submit")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_whole_flow_applies_a_split_as_a_new_config_version(cast: dict[str, Any], reviews: Service) -> None:
    before = MeshVersion.current()
    change = submitted(cast)
    assert change["state"] == "pending"
    assert change["required_approvals"] == 1

    approved = act(cast["approver"], change["id"], "approve", {"digest": change["digest"], "comment": "lgtm"})
    assert approved.status_code == 200, approved.content
    assert approved.json()["state"] == "approved"

    applied = act(cast["editor"], change["id"], "apply")
    assert applied.status_code == 200, applied.content
    body = applied.json()
    assert body["state"] == "applied"
    assert body["applied_version"] == 1

    policy = Policy.objects.get(kind=PolicyKind.TRAFFIC, name="reviews")
    assert policy.spec == SPLIT_90_10
    version = ConfigVersion.objects.get(number=1)
    assert version.approver_names == ["alice"]
    assert version.author_name == "erin"
    assert version.mesh_version == MeshVersion.current() == before + 1
    assert [entry["spec"] for entry in version.document] == [SPLIT_90_10]

    live = cast["viewer"].get("/api/v1/traffic-policies/").json()["results"]
    assert [(p["name"], p["version"], p["spec"]) for p in live] == [("reviews", 1, SPLIT_90_10)]
    actions = list(AuditEvent.objects.filter(object_type="policy.changerequest").values_list("action", flat=True))
    assert set(actions) == {AuditAction.CREATE, AuditAction.SUBMIT, AuditAction.APPROVE, AuditAction.APPLY}


def test_the_author_can_never_approve_their_own_change(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    response = act(cast["editor"], change["id"], "approve")
    assert response.status_code == 403
    # Not even an admin who authored it.
    admin_change = open_change(cast["admin"], [traffic_item({"timeout_ms": 500}, service="reviews")], "alpha")
    act(cast["admin"], admin_change["id"], "submit")
    assert act(cast["admin"], admin_change["id"], "approve").status_code == 403
    assert "own change" in act(cast["admin"], admin_change["id"], "approve").json()["detail"]


def test_only_approvers_of_the_namespace_approve(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    # Beta's approver cannot even see alpha's change; an editor and a viewer may not approve.
    assert act(cast["beta_approver"], change["id"], "approve").status_code == 404
    assert act(cast["editor2"], change["id"], "approve").status_code == 403
    assert act(cast["viewer"], change["id"], "approve").status_code == 403
    assert ChangeRequest.objects.get(pk=change["id"]).approvals.count() == 0


def test_applying_without_enough_approvals_is_refused_and_changes_nothing(
    cast: dict[str, Any], reviews: Service
) -> None:
    change = submitted(cast)
    response = act(cast["editor"], change["id"], "apply")
    assert response.status_code == 409
    assert not Policy.objects.exists()
    assert not ConfigVersion.objects.exists()


def test_the_same_approver_counts_once(cast: dict[str, Any], reviews: Service, alpha: Any) -> None:
    cast["admin"].post("/api/v1/approval-rules/", {"namespace": "alpha", "required_approvals": 2}, format="json")
    change = submitted(cast)
    assert change["required_approvals"] == 2
    assert act(cast["approver"], change["id"], "approve").json()["state"] == "pending"
    again = act(cast["approver"], change["id"], "approve")
    assert again.status_code == 409
    assert ChangeRequest.objects.get(pk=change["id"]).approval_count() == 1
    assert act(cast["approver2"], change["id"], "approve").json()["state"] == "approved"


def test_editing_voids_approvals_and_sends_the_change_back_to_pending(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    old_digest = change["digest"]
    assert act(cast["approver"], change["id"], "approve").json()["state"] == "approved"

    new_split = {"split": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}]}
    edited = cast["editor"].patch(
        f"/api/v1/change-requests/{change['id']}/", {"items": [traffic_item(new_split)]}, format="json"
    )
    assert edited.status_code == 200, edited.content
    body = edited.json()
    assert body["state"] == "pending"
    assert body["digest"] != old_digest
    assert body["approval_count"] == 0
    assert [a["current"] for a in body["approvals"]] == [False]
    assert act(cast["editor"], change["id"], "apply").status_code == 409

    # An approval of what the approver saw before the edit is refused, not counted against the new content.
    stale = act(cast["approver2"], change["id"], "approve", {"digest": old_digest})
    assert stale.status_code == 409
    assert act(cast["approver2"], change["id"], "approve", {"digest": body["digest"]}).json()["state"] == "approved"


def test_only_the_author_edits(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    response = cast["editor2"].patch(f"/api/v1/change-requests/{change['id']}/", {"title": "mine"}, format="json")
    assert response.status_code == 403


def test_pending_changes_expire(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    ChangeRequest.objects.filter(pk=change["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Approving an expired change finds it expired, whether or not the beat task ran yet.
    response = act(cast["approver"], change["id"], "approve")
    assert response.status_code == 409
    assert ChangeRequest.objects.get(pk=change["id"]).state == "expired"

    other = submitted(cast, {"timeout_ms": 900})
    ChangeRequest.objects.filter(pk=other["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert do_expire_changes(timezone.now()) == [other["id"]]
    assert AuditEvent.objects.filter(action=AuditAction.EXPIRE).count() == 2


def test_reject_needs_a_reason_and_ends_the_change(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    no_reason = act(cast["approver"], change["id"], "reject")
    assert no_reason.status_code == 400
    assert "reason" in no_reason.json()
    rejected = act(cast["approver"], change["id"], "reject", {"reason": "v2 is not ready"})
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["decision_reason"] == "v2 is not ready"
    assert act(cast["approver2"], change["id"], "approve").status_code == 409


def test_withdraw_by_the_author_only(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    assert act(cast["editor2"], change["id"], "withdraw").status_code == 403
    assert act(cast["editor"], change["id"], "withdraw").json()["state"] == "withdrawn"
    assert act(cast["editor"], change["id"], "submit").status_code == 409


def test_emergency_apply_needs_an_admin_and_a_reason_and_is_flagged(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    assert act(cast["editor"], change["id"], "apply", {"emergency_reason": "outage"}).status_code == 403
    assert act(cast["approver"], change["id"], "apply", {"emergency_reason": "outage"}).status_code == 403
    applied = act(cast["admin"], change["id"], "apply", {"emergency_reason": "reviews v1 is down, INC-42"})
    assert applied.status_code == 200, applied.content
    body = applied.json()
    assert body["state"] == "applied"
    assert body["emergency"] is True
    version = cast["viewer"].get(f"/api/v1/config-versions/{body['applied_version']}/").json()
    assert version["emergency"] is True
    assert version["emergency_reason"] == "reviews v1 is down, INC-42"
    assert version["approver_names"] == []
    assert AuditEvent.objects.filter(action=AuditAction.EMERGENCY_APPLY, namespace_name="alpha").count() == 1


def test_invalid_items_are_refused_with_field_messages_and_nothing_is_stored(
    cast: dict[str, Any], reviews: Service
) -> None:
    response = cast["editor"].post(
        "/api/v1/change-requests/",
        {
            "namespace": "alpha",
            "title": "bad",
            "items": [
                traffic_item({"split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 20}]}),
                traffic_item({"retries": {"attempts": 99, "retry_on": ["5xx"]}}, service="ghost"),
                {"operation": "create", "kind": "authorization", "name": "Bad Name", "spec": {"action": "MAYBE"}},
            ],
        },
        format="json",
    )
    assert response.status_code == 400
    items = response.json()["items"]
    assert "sum to 110" in items[0]["spec"]["split"][0]
    assert "ghost" in items[1]["service"][0]
    assert items[2]["spec"]["action"] or items[2]["name"]
    assert not ChangeRequest.objects.exists()


def test_unknown_fields_in_a_spec_are_errors(cast: dict[str, Any], reviews: Service) -> None:
    response = cast["editor"].post(
        "/api/v1/change-requests/",
        {"namespace": "alpha", "title": "typo", "items": [traffic_item({"timout_ms": 5})]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["items"][0]["spec"]["timout_ms"] == ["Unknown field."]


def test_warnings_are_kept_on_the_items(cast: dict[str, Any], reviews: Service) -> None:
    change = open_change(
        cast["editor"], [traffic_item({"split": [{"version": "v1", "weight": 100}, {"version": "v9", "weight": 0}]})]
    )
    codes = {warning["code"] for warning in change["items"][0]["warnings"]}
    assert codes == {"TP001", "TP002"}


def test_a_viewer_cannot_propose_and_live_policy_is_read_only(cast: dict[str, Any], reviews: Service) -> None:
    response = cast["viewer"].post(
        "/api/v1/change-requests/", {"namespace": "alpha", "title": "x", "items": [traffic_item({})]}, format="json"
    )
    assert response.status_code == 403
    direct = cast["admin"].post("/api/v1/traffic-policies/", {"name": "reviews"}, format="json")
    assert direct.status_code == 405
    assert "change request" in direct.json()["detail"]


def test_applying_over_a_policy_that_moved_on_is_a_conflict(cast: dict[str, Any], reviews: Service) -> None:
    applied_change(cast, [traffic_item({"timeout_ms": 1000})])
    first = open_change(cast["editor"], [traffic_item({"timeout_ms": 2000}, "update")])
    applied_change(cast, [traffic_item({"timeout_ms": 3000}, "update")])
    act(cast["editor"], first["id"], "submit")
    act(cast["approver"], first["id"], "approve")
    diff = cast["viewer"].get(f"/api/v1/change-requests/{first['id']}/diff/").json()
    assert diff["items"][0]["stale"] is True
    response = act(cast["editor"], first["id"], "apply")
    assert response.status_code == 409
    assert Policy.objects.get(name="reviews").spec == {"timeout_ms": 3000}


def test_diff_shows_each_changed_path(cast: dict[str, Any], reviews: Service) -> None:
    applied_change(cast, [traffic_item({"timeout_ms": 1000, "split": SPLIT_90_10["split"]})])
    change = open_change(
        cast["editor"],
        [
            traffic_item(
                {"timeout_ms": 1000, "split": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}]},
                "update",
            )
        ],
    )
    diff = cast["viewer"].get(f"/api/v1/change-requests/{change['id']}/diff/").json()
    assert diff["digest"] == change["digest"]
    changes = diff["items"][0]["changes"]
    assert changes == [
        {"path": "split[0].weight", "before": 90, "after": 50},
        {"path": "split[1].weight", "before": 10, "after": 50},
    ]


def test_rollback_opens_a_change_that_restores_an_earlier_version(cast: dict[str, Any], reviews: Service) -> None:
    first = applied_change(cast, [traffic_item({"timeout_ms": 1000})])
    applied_change(cast, [traffic_item({"timeout_ms": 5000}, "update")])
    response = cast["editor"].post(f"/api/v1/config-versions/{first['applied_version']}/rollback/", {}, format="json")
    assert response.status_code == 201, response.content
    rollback = response.json()
    assert rollback["restores"] == first["applied_version"]
    assert rollback["state"] == "draft"
    assert [(i["operation"], i["spec"]) for i in rollback["items"]] == [("update", {"timeout_ms": 1000})]
    # Same rules: it needs an approval like any other change.
    act(cast["editor"], rollback["id"], "submit")
    assert act(cast["editor"], rollback["id"], "apply").status_code == 409
    act(cast["approver"], rollback["id"], "approve")
    assert act(cast["editor"], rollback["id"], "apply").json()["applied_version"] == 3
    assert Policy.objects.get(name="reviews").spec == {"timeout_ms": 1000}


def test_rollback_to_the_live_state_is_refused(cast: dict[str, Any], reviews: Service) -> None:
    applied = applied_change(cast, [traffic_item({"timeout_ms": 1000})])
    response = cast["editor"].post(f"/api/v1/config-versions/{applied['applied_version']}/rollback/", {}, format="json")
    assert response.status_code == 409


def test_delete_removes_the_live_policy(cast: dict[str, Any], reviews: Service) -> None:
    applied_change(cast, [traffic_item({"timeout_ms": 1000})])
    applied_change(cast, [{"operation": "delete", "kind": "traffic", "name": "reviews", "service": "reviews"}])
    assert not Policy.objects.exists()
    assert ConfigVersion.objects.get(number=2).document == []


def test_config_versions_are_immutable(cast: dict[str, Any], reviews: Service) -> None:
    applied = applied_change(cast, [traffic_item({"timeout_ms": 1000})])
    version = ConfigVersion.objects.get(number=applied["applied_version"])
    version.summary = "rewritten history"
    with pytest.raises(ImmutableVersionError):
        version.save()
    with pytest.raises(ImmutableVersionError):
        version.delete()
    assert cast["admin"].delete(f"/api/v1/config-versions/{version.number}/").status_code == 405


def test_inbox_lists_what_awaits_me(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    inbox = cast["approver"].get("/api/v1/change-requests/?awaiting=me").json()["results"]
    assert [c["id"] for c in inbox] == [change["id"]]
    assert cast["editor"].get("/api/v1/change-requests/?awaiting=me").json()["results"] == []
    act(cast["approver"], change["id"], "approve")
    assert cast["approver"].get("/api/v1/change-requests/?awaiting=me").json()["results"] == []


def test_comments(cast: dict[str, Any], reviews: Service) -> None:
    change = submitted(cast)
    posted = cast["approver"].post(
        f"/api/v1/change-requests/{change['id']}/comments/", {"body": "why 10%?"}, format="json"
    )
    assert posted.status_code == 201
    assert cast["viewer"].post(f"/api/v1/change-requests/{change['id']}/comments/", {"body": "x"}).status_code == 403
    got = cast["viewer"].get(f"/api/v1/change-requests/{change['id']}/").json()
    assert [(c["author"], c["body"]) for c in got["comments"]] == [("alice", "why 10%?")]


def test_unauthenticated_requests_are_refused(reviews: Service) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    for path in ["/api/v1/change-requests/", "/api/v1/config-versions/", "/api/v1/traffic-policies/"]:
        assert client.get(path).status_code in (401, 403)


def test_the_beat_task_expires_overdue_changes(cast: dict[str, Any], reviews: Service) -> None:
    from meshui.policy.tasks import expire_change_requests

    overdue = submitted(cast)
    fresh = submitted(cast, {"timeout_ms": 700})
    ChangeRequest.objects.filter(pk=overdue["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert expire_change_requests() == 1
    states = dict(ChangeRequest.objects.values_list("pk", "state"))
    assert states == {overdue["id"]: "expired", fresh["id"]: "pending"}


def test_validate_checks_items_without_saving(cast: dict[str, Any], reviews: Service) -> None:
    body = {
        "namespace": "alpha",
        "title": "dry run",
        "items": [traffic_item({"retries": {"attempts": 2, "retry_on": ["5xx"], "non_idempotent": True}})],
    }
    checked = cast["editor"].post("/api/v1/change-requests/validate/", body, format="json")
    assert checked.status_code == 200, checked.content
    assert [w["code"] for w in checked.json()["items"][0]["warnings"]] == ["TP004"]
    body["items"] = [traffic_item({"split": [{"version": "v1", "weight": 5}]})]
    refused = cast["editor"].post("/api/v1/change-requests/validate/", body, format="json")
    assert refused.status_code == 400
    assert "sum to 5" in refused.json()["items"][0]["spec"]["split"][0]
    assert cast["viewer"].post("/api/v1/change-requests/validate/", body, format="json").status_code == 403
    assert not ChangeRequest.objects.exists()


def test_config_versions_filter_by_time(cast: dict[str, Any], reviews: Service) -> None:
    applied_change(cast, [traffic_item({"timeout_ms": 1000})])
    now = timezone.now()
    later = (now + timedelta(minutes=1)).isoformat()
    earlier = (now - timedelta(minutes=1)).isoformat()
    assert len(cast["viewer"].get("/api/v1/config-versions/", {"since": earlier}).json()["results"]) == 1
    assert cast["viewer"].get("/api/v1/config-versions/", {"since": later}).json()["results"] == []
    assert cast["viewer"].get("/api/v1/config-versions/", {"until": earlier}).json()["results"] == []


def test_authorization_rules_shadowed_by_another_policy_are_flagged(cast: dict[str, Any], reviews: Service) -> None:
    deny_batch = {
        "operation": "create",
        "kind": "authorization",
        "name": "no-batch",
        "service": "reviews",
        "spec": {"action": "DENY", "rules": [{"from": {"namespaces": ["batch"]}}]},
    }
    applied_change(cast, [deny_batch])
    allow = {
        "operation": "create",
        "kind": "authorization",
        "name": "callers",
        "spec": {
            "action": "ALLOW",
            "rules": [{"from": {"namespaces": ["batch"]}}, {"from": {"namespaces": ["alpha"]}}],
        },
    }
    change = open_change(cast["editor"], [allow])
    warnings = [(w["code"], w["field"]) for w in change["items"][0]["warnings"]]
    assert warnings == [("AP005", "rules[0]")]
    message = change["items"][0]["warnings"][0]["message"]
    assert "alpha/no-batch" in message

    deny_all = {**deny_batch, "name": "lockdown", "spec": {"action": "DENY", "rules": [{}]}}
    applied_change(
        cast,
        [{**allow, "name": "web-only", "spec": {"action": "ALLOW", "rules": [{"from": {"namespaces": ["alpha"]}}]}}],
    )
    flagged = open_change(cast["editor"], [deny_all])
    assert [(w["code"], w["field"]) for w in flagged["items"][0]["warnings"]] == [("AP006", "rules[0]")]
