"""The life of a change request: open, edit, submit, approve, reject, withdraw, expire, apply.

Each step checks who may take it, runs in one transaction with its audit event,
and raises a DRF exception (403, 409 or a field-level 400) when it may not happen,
leaving nothing half done. The rules (ADR 015):

- only holders of ``propose`` in the namespace open and edit changes, only the author edits;
- only holders of ``approve`` in the namespace approve or reject, never the author;
- an approval is bound to the change's digest: editing the items voids earlier approvals;
- one approver counts once, however often they approve;
- a submitted change nobody decides on expires;
- applying needs the namespace's number of approvals, except an emergency apply by an
  admin with a written reason, which is audited as such and flagged wherever it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.api.errors import Conflict, NamespacePermissionDenied
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction, digest
from meshui.catalog.models import Namespace
from meshui.policy.items import CheckedItem, ProposedItem, check_item
from meshui.policy.models import (
    EDITABLE_STATES,
    Approval,
    ApprovalRule,
    ChangeComment,
    ChangeItem,
    ChangeOperation,
    ChangeRequest,
    ChangeState,
    ConfigVersion,
    Policy,
    PolicyKind,
)
from meshui.rollout.actions import do_bump_version


def _actor(request: Request) -> User:
    # Every view here requires authentication, so the user is a real one.
    return cast(User, request.user)


def _require(request: Request, capability: Capability, namespace_id: int, doing: str) -> None:
    if not namespace_access(request.user).can(capability, namespace_id):
        raise NamespacePermissionDenied(f"You need the '{capability}' permission here to {doing}.", namespace_id)


def _audit(request: Request | None, action: AuditAction, change: ChangeRequest) -> None:
    do_record_change(
        request,
        action,
        change,
        namespace_id=change.namespace_id,
        after={"state": change.state, "digest": change.digest},
    )


def check_items(namespace: Namespace, items: Sequence[ProposedItem]) -> list[CheckedItem]:
    """Every item validated, or one 400 whose ``items`` list holds each item's errors in place."""
    if not items:
        raise ValidationError({"items": ["A change request holds at least one item."]})
    checked: list[CheckedItem | None] = []
    errors: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        try:
            if (item.kind, item.name) in seen:
                raise ValidationError({"name": [f"The {item.kind} policy {item.name!r} appears twice."]})
            seen.add((item.kind, item.name))
            checked.append(check_item(namespace, item))
            errors.append({})
        except ValidationError as exc:
            checked.append(None)
            errors.append(exc.detail)
    if any(errors):
        raise ValidationError({"items": errors})
    return [item for item in checked if item is not None]


def _write_items(change: ChangeRequest, checked: Sequence[CheckedItem]) -> None:
    change.items.all().delete()
    ChangeItem.objects.bulk_create(
        ChangeItem(
            change=change,
            operation=entry.item.operation,
            kind=entry.item.kind,
            name=entry.item.name,
            service=entry.item.service,
            spec=entry.item.spec,
            base_digest=entry.base_digest,
            warnings=[{"code": w.code, "field": w.field, "message": w.message} for w in entry.warnings],
        )
        for entry in checked
    )
    change.digest = change.compute_digest()


def require_propose(request: Request, namespace: Namespace) -> None:
    _require(request, Capability.PROPOSE, namespace.pk, "propose a change")


def do_open_change(
    request: Request,
    namespace: Namespace,
    title: str,
    description: str,
    items: Sequence[ProposedItem],
    *,
    restores: ConfigVersion | None = None,
) -> ChangeRequest:
    _require(request, Capability.PROPOSE, namespace.pk, "propose a change")
    checked = check_items(namespace, items)
    with transaction.atomic():
        change = ChangeRequest.objects.create(
            namespace=namespace, title=title, description=description, author=_actor(request), restores=restores
        )
        _write_items(change, checked)
        change.save(update_fields=["digest"])
        do_record_change(
            request, AuditAction.CREATE, change, namespace_id=namespace.pk, after={"digest": change.digest}
        )
    return change


def _locked(change: ChangeRequest) -> ChangeRequest:
    """The change re-read under a row lock, so two decisions on it cannot interleave."""
    return ChangeRequest.objects.select_for_update().get(pk=change.pk)


def _expire_if_due(change: ChangeRequest, now: datetime) -> None:
    if change.is_expired(now):
        change.state = ChangeState.EXPIRED
        change.save(update_fields=["state", "updated_at"])
        _audit(None, AuditAction.EXPIRE, change)


def _settle_expiry(change: ChangeRequest) -> None:
    """Record an expiry that is due before acting, in its own transaction: the refusal that follows
    rolls back the action's transaction, and must not take the expiry with it."""
    if change.is_expired(timezone.now()):
        with transaction.atomic():
            _expire_if_due(_locked(change), timezone.now())


def _require_not_expired(change: ChangeRequest) -> None:
    if change.is_expired(timezone.now()):
        raise Conflict(f"Change #{change.pk} expired; open it again.")


def _require_state(change: ChangeRequest, allowed: set[str] | frozenset[str], doing: str) -> None:
    if change.state not in allowed:
        raise Conflict(f"Change #{change.pk} is {change.state}; it cannot {doing}.")


def do_edit_change(
    request: Request,
    change: ChangeRequest,
    *,
    title: str | None = None,
    description: str | None = None,
    items: Sequence[ProposedItem] | None = None,
) -> ChangeRequest:
    """Edit an open change. New items give a new digest: earlier approvals no longer count."""
    _require(request, Capability.PROPOSE, change.namespace_id, "edit a change")
    if change.author_id != request.user.pk:
        raise NamespacePermissionDenied("Only the author edits a change request.", change.namespace_id)
    checked = check_items(change.namespace, items) if items is not None else None
    _settle_expiry(change)
    with transaction.atomic():
        change = _locked(change)
        _require_not_expired(change)
        _require_state(change, EDITABLE_STATES, "be edited")
        before = {"digest": change.digest, "state": change.state}
        if title is not None:
            change.title = title
        if description is not None:
            change.description = description
        if checked is not None:
            previous = change.digest
            _write_items(change, checked)
            if change.digest != previous and change.state != ChangeState.DRAFT:
                change.state = ChangeState.PENDING
                change.expires_at = timezone.now() + _ttl()
        change.save()
        do_record_change(
            request,
            AuditAction.UPDATE,
            change,
            namespace_id=change.namespace_id,
            before=before,
            after={"digest": change.digest, "state": change.state},
        )
    return change


def _ttl() -> timedelta:
    return timedelta(hours=settings.MESH_CHANGE_REQUEST_TTL_HOURS)


def do_submit(request: Request, change: ChangeRequest) -> ChangeRequest:
    if change.author_id != request.user.pk:
        raise NamespacePermissionDenied("Only the author submits a change request.", change.namespace_id)
    with transaction.atomic():
        change = _locked(change)
        _require_state(change, {ChangeState.DRAFT}, "be submitted")
        now = timezone.now()
        change.state = ChangeState.PENDING
        change.submitted_at = now
        change.expires_at = now + _ttl()
        change.save(update_fields=["state", "submitted_at", "expires_at", "updated_at"])
        _audit(request, AuditAction.SUBMIT, change)
    return change


def do_approve(request: Request, change: ChangeRequest, *, seen_digest: str | None, comment: str) -> ChangeRequest:
    """Approve the change's current content; ``seen_digest`` (what the approver reviewed) must still be it."""
    _require(request, Capability.APPROVE, change.namespace_id, "approve a change")
    if change.author_id == request.user.pk:
        raise NamespacePermissionDenied("You cannot approve your own change.", change.namespace_id)
    _settle_expiry(change)
    with transaction.atomic():
        change = _locked(change)
        _require_not_expired(change)
        _require_state(change, {ChangeState.PENDING, ChangeState.APPROVED}, "be approved")
        if seen_digest is not None and seen_digest != change.digest:
            raise Conflict("The change was edited after you reviewed it; review the new content and approve again.")
        _, created = Approval.objects.get_or_create(
            change=change, approver=request.user, digest=change.digest, defaults={"comment": comment}
        )
        if not created:
            raise Conflict("You already approved this content of the change.")
        if change.approval_count() >= ApprovalRule.required_for(change.namespace_id):
            change.state = ChangeState.APPROVED
            change.save(update_fields=["state", "updated_at"])
        _audit(request, AuditAction.APPROVE, change)
    return change


def do_reject(request: Request, change: ChangeRequest, *, reason: str) -> ChangeRequest:
    _require(request, Capability.APPROVE, change.namespace_id, "reject a change")
    if change.author_id == request.user.pk:
        raise NamespacePermissionDenied("Withdraw your own change instead of rejecting it.", change.namespace_id)
    _settle_expiry(change)
    with transaction.atomic():
        change = _locked(change)
        _require_not_expired(change)
        _require_state(change, {ChangeState.PENDING, ChangeState.APPROVED}, "be rejected")
        change.state = ChangeState.REJECTED
        change.decided_by = _actor(request)
        change.decision_reason = reason
        change.save(update_fields=["state", "decided_by", "decision_reason", "updated_at"])
        _audit(request, AuditAction.REJECT, change)
    return change


def do_withdraw(request: Request, change: ChangeRequest) -> ChangeRequest:
    if change.author_id != request.user.pk and not namespace_access(request.user).can(
        Capability.MANAGE, change.namespace_id
    ):
        raise NamespacePermissionDenied("Only the author (or an admin) withdraws a change.", change.namespace_id)
    with transaction.atomic():
        change = _locked(change)
        _require_state(change, EDITABLE_STATES, "be withdrawn")
        change.state = ChangeState.WITHDRAWN
        change.decided_by = _actor(request)
        change.save(update_fields=["state", "decided_by", "updated_at"])
        _audit(request, AuditAction.WITHDRAW, change)
    return change


def do_comment(request: Request, change: ChangeRequest, body: str) -> ChangeComment:
    access = namespace_access(request.user)
    if not (access.can(Capability.PROPOSE, change.namespace_id) or access.can(Capability.APPROVE, change.namespace_id)):
        raise NamespacePermissionDenied(
            "Commenting needs the 'propose' or 'approve' permission here.", change.namespace_id
        )
    return ChangeComment.objects.create(change=change, author=_actor(request), body=body)


def do_expire_changes(now: datetime) -> list[int]:
    """Expire every submitted change past its deadline (Celery beat); returns their ids."""
    expired: list[int] = []
    due = ChangeRequest.objects.filter(state=ChangeState.PENDING, expires_at__lte=now).values_list("pk", flat=True)
    for pk in due:
        with transaction.atomic():
            change = ChangeRequest.objects.select_for_update().get(pk=pk)
            if change.is_expired(now):
                _expire_if_due(change, now)
                expired.append(pk)
    return expired


def _apply_items(change: ChangeRequest, version: ConfigVersion) -> None:
    """Write the change's items over live policy, refusing any item whose live target moved on."""
    for item in change.items.all():
        live = (
            Policy.objects.select_for_update()
            .filter(namespace=change.namespace, kind=item.kind, name=item.name)
            .first()
        )
        live_digest = live.spec_digest if live is not None else ""
        if live_digest != item.base_digest:
            raise Conflict(
                f"The live {item.kind} policy {item.name!r} changed after this request was written; "
                "open a new change against the current policy."
            )
        if item.operation == ChangeOperation.DELETE and live is not None:
            live.delete()
        elif item.operation == ChangeOperation.CREATE:
            Policy.objects.create(
                namespace=change.namespace,
                kind=item.kind,
                name=item.name,
                service=item.service,
                spec=item.spec,
                version=version,
            )
        elif live is not None:
            live.spec = item.spec
            live.service = item.service
            live.version = version
            live.save(update_fields=["spec", "service", "version", "updated_at"])


def _document_after(namespace: Namespace, items: Sequence[ProposedItem]) -> list[dict[str, Any]]:
    """Every live policy as it will be once ``items`` are applied in ``namespace``, in a stable order."""
    entries = {
        (policy.namespace.name, policy.kind, policy.name): policy.document_entry()
        for policy in Policy.objects.select_related("namespace")
    }
    for item in items:
        key = (namespace.name, item.kind, item.name)
        if item.operation == ChangeOperation.DELETE:
            entries.pop(key, None)
        else:
            entries[key] = {
                "kind": item.kind,
                "namespace": namespace.name,
                "name": item.name,
                "service": item.service,
                "spec": item.spec,
            }
    return [entries[key] for key in sorted(entries)]


def do_apply(request: Request, change: ChangeRequest, *, emergency_reason: str = "") -> ChangeRequest:
    """Make the change live as a new ``ConfigVersion`` and start its rollout once committed.

    Items are validated again against the mesh as it is now: a service removed
    or a version retired since the review is a 400, not a broken push.
    """
    emergency = bool(emergency_reason.strip())
    if emergency:
        _require(request, Capability.MANAGE, change.namespace_id, "apply a change without approval")
    else:
        access = namespace_access(request.user)
        if not (
            access.can(Capability.PROPOSE, change.namespace_id) or access.can(Capability.APPROVE, change.namespace_id)
        ):
            raise NamespacePermissionDenied(
                "Applying needs the 'propose' or 'approve' permission here.", change.namespace_id
            )
    _settle_expiry(change)
    with transaction.atomic():
        change = _locked(change)
        _require_not_expired(change)
        if emergency:
            _require_state(change, EDITABLE_STATES, "be applied")
        else:
            _require_state(change, {ChangeState.APPROVED}, "be applied without approval")
            if change.approval_count() < ApprovalRule.required_for(change.namespace_id):
                raise Conflict("The change no longer has the approvals it needs.")
        proposed = [ProposedItem(i.operation, i.kind, i.name, i.service, i.spec) for i in change.items.all()]
        check_items(change.namespace, proposed)
        # Bumping first takes the mesh version's row lock: applies are serialized, so
        # version numbers and base-digest checks cannot race.
        mesh_version = do_bump_version()
        approvers = sorted(
            {approval.approver.get_username() for approval in change.valid_approvals().select_related("approver")}
        )
        document = _document_after(change.namespace, proposed)
        version = ConfigVersion.objects.create(
            number=ConfigVersion.latest_number() + 1,
            digest=digest(document),
            document=document,
            namespace=change.namespace,
            author_name=change.author.get_username(),
            approver_names=approvers,
            applied_by_name=request.user.get_username(),
            emergency_reason=emergency_reason.strip() if emergency else "",
            mesh_version=mesh_version,
            summary=change.title[:200],
        )
        _apply_items(change, version)
        if any(item.kind == PolicyKind.REQUEST_AUTHENTICATION for item in proposed):
            # A new issuer's keys are fetched now, not at the next beat: until then its tokens are refused.
            from meshui.policy.tasks import refresh_jwks  # late: the task module imports this one

            transaction.on_commit(refresh_jwks.delay)
        change.state = ChangeState.APPLIED
        change.applied_version = version
        change.emergency_reason = version.emergency_reason
        change.save(update_fields=["state", "applied_version", "emergency_reason", "updated_at"])
        _audit(request, AuditAction.EMERGENCY_APPLY if emergency else AuditAction.APPLY, change)
    return change


def rollback_items(version: ConfigVersion, namespace: Namespace) -> list[ProposedItem]:
    """The items that make ``namespace``'s live policy what it was in ``version``."""
    wanted = {
        (entry["kind"], entry["name"]): entry for entry in version.document if entry["namespace"] == namespace.name
    }
    live = {(policy.kind, policy.name): policy for policy in Policy.objects.filter(namespace=namespace)}
    items = []
    for key, entry in sorted(wanted.items()):
        current = live.get(key)
        if current is None:
            items.append(
                ProposedItem(ChangeOperation.CREATE, entry["kind"], entry["name"], entry["service"], entry["spec"])
            )
        elif current.spec != entry["spec"] or current.service != entry["service"]:
            items.append(
                ProposedItem(ChangeOperation.UPDATE, entry["kind"], entry["name"], entry["service"], entry["spec"])
            )
    for key, current in sorted(live.items()):
        if key not in wanted:
            items.append(ProposedItem(ChangeOperation.DELETE, current.kind, current.name, current.service, None))
    return items


def do_open_rollback(request: Request, version: ConfigVersion, namespace: Namespace) -> ChangeRequest:
    items = rollback_items(version, namespace)
    if not items:
        raise Conflict(f"Namespace {namespace.name!r} already has the policy of version {version.number}.")
    return do_open_change(
        request,
        namespace,
        f"Roll back {namespace.name} to config version {version.number}",
        f"Restores the policy of namespace {namespace.name} as it was in version {version.number}.",
        items,
        restores=version,
    )
