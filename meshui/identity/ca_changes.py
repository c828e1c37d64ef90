"""Reviewed changes to the mesh's CA: a rotation or a root's retirement is requested, approved by someone else,
and applied with the last approval; each step audited.

The CA is every namespace's, so a change needs as many approvals as the strictest namespace's rule asks of a
policy change, from people who hold the 'approve' permission in all namespaces; its requester never counts.
Admins may apply a change at once with a written reason, which the audit log and the API flag as an emergency.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.api.errors import Conflict, NamespacePermissionDenied
from meshui.audit.actions import do_record_change
from meshui.audit.models import AuditAction
from meshui.catalog.models import Namespace
from meshui.identity.actions import do_retire_root, do_rotate_ca
from meshui.identity.issuance import ca_store
from meshui.identity.models import CaChange, CaChangeApproval, CaChangeState, CaOperation
from meshui.identity.store import CaConfigurationError
from meshui.policy.models import ApprovalRule


def required_approvals() -> int:
    """What the strictest namespace asks of a change: the highest rule, or the default of namespaces without one."""
    asked = [ApprovalRule.objects.aggregate(most=Max("required_approvals"))["most"] or 0]
    if not asked[0] or Namespace.objects.filter(approval_rule__isnull=True).exists():
        asked.append(int(settings.MESH_DEFAULT_REQUIRED_APPROVALS))
    return max(1, *asked)


def _actor(request: Request) -> User:
    return cast(User, request.user)


def _audit(request: Request | None, action: AuditAction, change: CaChange) -> None:
    do_record_change(request, action, change, namespace_id=None, after={"state": change.state})


def _check_applicable(operation: str, authority_id: str) -> None:
    """Refuse what the CA would refuse now, rather than at the last approval."""
    store = ca_store()
    if store.read_only:
        raise Conflict("The CA comes from a mounted Secret: rotate it by updating the Secret.")
    if operation == CaOperation.RETIRE:
        known = [root_id for root_id, _ in store.bundle_entries(timezone.now())]
        if authority_id not in known:
            raise ValidationError({"id": [f"No root {authority_id!r} is in the bundle."]})
        if authority_id == known[0]:
            raise ValidationError({"id": ["The signing root cannot be retired: rotate first."]})


def _apply(request: Request | None, change: CaChange) -> None:
    """Carry the change out (inside the caller's transaction, with the change locked) and mark it applied."""
    try:
        if change.operation == CaOperation.ROTATE:
            change.created_authority_id = do_rotate_ca(request)
        else:
            do_retire_root(request, change.authority_id)
    except CaConfigurationError as exc:
        raise Conflict(str(exc)) from None
    change.state = CaChangeState.APPLIED
    change.decided_at = timezone.now()
    change.save(update_fields=["state", "decided_at", "created_authority_id"])


def _new_change(request: Request, operation: str, authority_id: str, **fields: object) -> CaChange:
    """A change an admin of every namespace asks for, of what the CA would do now (inside a transaction)."""
    if not namespace_access(request.user).can(Capability.MANAGE, None):
        raise NamespacePermissionDenied("Changing the CA needs the 'manage' permission in all namespaces.", None)
    _check_applicable(operation, authority_id)
    return CaChange.objects.create(
        operation=operation, authority_id=authority_id, requested_by=_actor(request), **fields
    )


def do_request_ca_change(request: Request, operation: str, authority_id: str, reason: str) -> CaChange:
    """Open a change for review (pending until approved, rejected, withdrawn or expired)."""
    with transaction.atomic():
        change = _new_change(
            request,
            operation,
            authority_id,
            reason=reason,
            required_approvals=required_approvals(),
            expires_at=timezone.now() + timedelta(hours=settings.MESH_CHANGE_REQUEST_TTL_HOURS),
        )
        _audit(request, AuditAction.SUBMIT, change)
    return change


def do_apply_ca_change_now(request: Request, operation: str, authority_id: str, emergency_reason: str) -> CaChange:
    """An admin's change without review: applied at once, its reason recorded and flagged."""
    with transaction.atomic():
        change = _new_change(
            request,
            operation,
            authority_id,
            reason=emergency_reason,
            required_approvals=0,
            expires_at=timezone.now(),
            emergency_reason=emergency_reason,
            decided_by=_actor(request),
        )
        _apply(request, change)
        _audit(request, AuditAction.EMERGENCY_APPLY, change)
    return change


def _locked(change: CaChange) -> CaChange:
    return CaChange.objects.select_for_update().get(pk=change.pk)


def _expire_if_due(pk: int, now: datetime) -> bool:
    """In a transaction of its own, under the row lock: mark the change expired if it is due."""
    with transaction.atomic():
        change = CaChange.objects.select_for_update().get(pk=pk)
        if not change.is_expired(now):
            return False
        change.state = CaChangeState.EXPIRED
        change.save(update_fields=["state"])
        _audit(None, AuditAction.EXPIRE, change)
        return True


def _settle_expiry(change: CaChange) -> None:
    """Record a due expiry before acting on a change: the refusal that follows must not roll it back."""
    if change.is_expired(timezone.now()):
        _expire_if_due(change.pk, timezone.now())


def _require_pending(change: CaChange, doing: str) -> None:
    if change.state != CaChangeState.PENDING:
        raise Conflict(f"CA change #{change.pk} is {change.state}; it cannot {doing}.")
    if change.is_expired(timezone.now()):  # due between the settling and the lock
        raise Conflict(f"CA change #{change.pk} expired; request it again.")


def do_expire_ca_changes(now: datetime) -> list[int]:
    """Expire every pending CA change past its deadline (Celery beat); returns their ids."""
    due = CaChange.objects.filter(state=CaChangeState.PENDING, expires_at__lte=now).values_list("pk", flat=True)
    return [pk for pk in due if _expire_if_due(pk, now)]


def _require_global_approver(request: Request, doing: str) -> None:
    if not namespace_access(request.user).can(Capability.APPROVE, None):
        raise NamespacePermissionDenied(f"You need the 'approve' permission in all namespaces to {doing}.", None)


def do_approve_ca_change(request: Request, change: CaChange) -> CaChange:
    _require_global_approver(request, "approve a CA change")
    if change.requested_by_id == request.user.pk:
        raise NamespacePermissionDenied("You cannot approve your own CA change.", None)
    _settle_expiry(change)
    with transaction.atomic():
        change = _locked(change)
        _require_pending(change, "be approved")
        _, created = CaChangeApproval.objects.get_or_create(change=change, approver=_actor(request))
        if not created:
            raise Conflict("You already approved this CA change.")
        _audit(request, AuditAction.APPROVE, change)
        if change.approvals.count() >= change.required_approvals:
            change.decided_by = _actor(request)
            _apply(request, change)
            _audit(request, AuditAction.APPLY, change)
    return change


def _decide(
    request: Request, change: CaChange, state: str, action: AuditAction, doing: str, reason: str = ""
) -> CaChange:
    """End a pending change without applying it (rejected, withdrawn), under the row lock, audited."""
    _settle_expiry(change)
    with transaction.atomic():
        change = _locked(change)
        _require_pending(change, doing)
        change.state = state
        change.decided_by = _actor(request)
        change.decided_at = timezone.now()
        change.decision_reason = reason
        change.save(update_fields=["state", "decided_by", "decided_at", "decision_reason"])
        _audit(request, action, change)
    return change


def do_reject_ca_change(request: Request, change: CaChange, reason: str) -> CaChange:
    _require_global_approver(request, "reject a CA change")
    if change.requested_by_id == request.user.pk:
        raise NamespacePermissionDenied("Withdraw your own CA change instead of rejecting it.", None)
    return _decide(request, change, CaChangeState.REJECTED, AuditAction.REJECT, "be rejected", reason)


def do_withdraw_ca_change(request: Request, change: CaChange) -> CaChange:
    if change.requested_by_id != request.user.pk and not namespace_access(request.user).can(Capability.MANAGE, None):
        raise NamespacePermissionDenied("Only the requester (or an admin of all namespaces) withdraws it.", None)
    return _decide(request, change, CaChangeState.WITHDRAWN, AuditAction.WITHDRAW, "be withdrawn")
