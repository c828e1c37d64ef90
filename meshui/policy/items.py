"""Validating one proposed change item against its kind's schema and the live mesh.

Errors are DRF ``ValidationError``s keyed by the item's field (``spec.retries.attempts``,
``service``, ``name``), so the API answers 400 naming exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework.exceptions import ValidationError

from meshui.catalog.models import Namespace, Service, Workload
from meshui.policy.models import NAMESPACE_SINGLETONS, SINGLETON_NAME, ChangeOperation, Policy, PolicyKind
from meshui.policy.validation import (
    Warning,
    authorization_conflict_warnings,
    validate_authorization_policy,
    validate_namespace_authorization_default,
    validate_peer_authentication,
    validate_request_authentication,
    validate_traffic_policy,
)


@dataclass(frozen=True)
class ProposedItem:
    operation: str
    kind: str
    name: str
    service: str
    spec: dict[str, Any] | None


@dataclass(frozen=True)
class CheckedItem:
    """A proposal that passed validation, with the digest of the live spec it was written against."""

    item: ProposedItem
    base_digest: str
    warnings: list[Warning]


def _service_versions(namespace: Namespace, service: str) -> set[str] | None:
    """The versions the service's workloads run; ``None`` when the service does not exist."""
    found = Service.objects.filter(namespace=namespace, name=service).first()
    if found is None:
        return None
    labels = Workload.objects.filter(service=found).values_list("labels", flat=True)
    return {value["version"] for value in labels if isinstance(value.get("version"), str)}


def _validate_spec(namespace: Namespace, item: ProposedItem) -> tuple[dict[str, Any], list[Warning]]:
    spec = item.spec
    try:
        if item.kind == PolicyKind.TRAFFIC:
            return validate_traffic_policy(spec, known_versions=_service_versions(namespace, item.service))
        validators: dict[str, Callable[[Any], tuple[dict[str, Any], list[Warning]]]] = {
            PolicyKind.AUTHORIZATION: validate_authorization_policy,
            PolicyKind.PEER_AUTHENTICATION: validate_peer_authentication,
            PolicyKind.REQUEST_AUTHENTICATION: validate_request_authentication,
            PolicyKind.AUTHORIZATION_DEFAULT: validate_namespace_authorization_default,
        }
        return validators[item.kind](spec)
    except ValidationError as exc:
        raise ValidationError({"spec": exc.detail}) from None


def _check_target(namespace: Namespace, item: ProposedItem) -> None:
    if item.kind in NAMESPACE_SINGLETONS:
        if item.name != SINGLETON_NAME:
            raise ValidationError({"name": [f"A {item.kind} policy is one per namespace, named '{SINGLETON_NAME}'."]})
        if item.service:
            raise ValidationError({"service": [f"A {item.kind} policy applies to the whole namespace."]})
        return
    if item.kind == PolicyKind.TRAFFIC:
        if not item.service:
            raise ValidationError({"service": ["A traffic policy names the destination service it applies to."]})
        if item.name != item.service:
            raise ValidationError({"name": ["A traffic policy is named after its service (one per service)."]})
    exists = Service.objects.filter(namespace=namespace, name=item.service).exists
    if item.service and item.operation != ChangeOperation.DELETE and not exists():
        raise ValidationError({"service": [f"No service {item.service!r} in namespace {namespace.name!r}."]})


def _overlapping_authorization(namespace: Namespace, item: ProposedItem) -> list[tuple[str, Any]]:
    """The namespace's other live authorization policies that apply wherever ``item`` does."""
    others = Policy.objects.filter(namespace=namespace, kind=PolicyKind.AUTHORIZATION).exclude(name=item.name)
    return [
        (f"{namespace.name}/{policy.name}", policy.spec)
        for policy in others
        if "" in (policy.service, item.service) or policy.service == item.service
    ]


def check_item(namespace: Namespace, item: ProposedItem) -> CheckedItem:
    """Validate ``item`` against its schema and the current live policy of ``namespace``."""
    _check_target(namespace, item)
    live = Policy.objects.filter(namespace=namespace, kind=item.kind, name=item.name).first()
    if item.operation == ChangeOperation.CREATE and live is not None:
        raise ValidationError({"operation": [f"{live} already exists; propose an update instead."]})
    if item.operation != ChangeOperation.CREATE and live is None:
        raise ValidationError(
            {"operation": [f"There is no live {item.kind} policy {item.name!r} to {item.operation}."]}
        )
    if item.operation == ChangeOperation.DELETE:
        if item.spec is not None:
            raise ValidationError({"spec": ["A delete carries no spec."]})
        return CheckedItem(item, live.spec_digest if live else "", [])
    if item.spec is None:
        raise ValidationError({"spec": ["This field is required."]})
    spec, warnings = _validate_spec(namespace, item)
    if item.kind == PolicyKind.AUTHORIZATION:
        warnings = warnings + authorization_conflict_warnings(spec, _overlapping_authorization(namespace, item))
    validated = ProposedItem(item.operation, item.kind, item.name, item.service, _plain(spec))
    return CheckedItem(validated, live.spec_digest if live else "", warnings)


def _plain(value: Any) -> Any:
    """Validated data as plain JSON types (serializers return OrderedDicts), so digests are stable."""
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value
