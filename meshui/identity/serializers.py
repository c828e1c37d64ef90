from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from meshui.api.serializers import StrictCharField, StrictModelSerializer, VisibleSlugRelatedField
from meshui.catalog.models import Namespace
from meshui.catalog.validators import dns_label
from meshui.identity.durations import parse_duration
from meshui.identity.models import CaChange, CaChangeApproval, IssuedCertificate, JoinToken
from meshui.policy.validation import StrictSerializer

MAX_JOIN_TOKEN_TTL = dt.timedelta(days=30)


class JoinTokenSerializer(StrictModelSerializer):
    """A join token; ``token`` (the secret) appears once, in the answer to its creation."""

    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all())
    service_account = StrictCharField(max_length=63, required=False, allow_blank=True, validators=[dns_label])
    ttl = StrictCharField(write_only=True, required=False, help_text="How long it is usable: 30m, 24h, 7d.")
    state = serializers.SerializerMethodField()

    class Meta:
        model = JoinToken
        fields = [
            "id",
            "namespace",
            "service_account",
            "description",
            "ttl",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "state",
        ]
        read_only_fields = ["id", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at", "state"]

    def get_state(self, token: JoinToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        return "expired" if token.expires_at <= timezone.now() else "usable"

    def validate_ttl(self, value: str) -> dt.timedelta:
        try:
            ttl = parse_duration(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        if ttl > MAX_JOIN_TOKEN_TTL:
            raise serializers.ValidationError("A join token is usable for at most 30 days.")
        return ttl

    def create(self, validated_data: dict[str, Any]) -> JoinToken:
        ttl = validated_data.pop("ttl", dt.timedelta(hours=settings.MESH_JOIN_TOKEN_TTL_HOURS))
        token, plain = JoinToken.issue(
            validated_data["namespace"],
            validated_data.get("service_account", ""),
            timezone.now() + ttl,
            created_by=validated_data.get("created_by"),
            description=validated_data.get("description", ""),
        )
        token.plain = plain  # type: ignore[attr-defined]  # handed back once by to_representation
        return token

    def to_representation(self, instance: JoinToken) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        plain = getattr(instance, "plain", None)
        if plain is not None:
            data["token"] = plain
        return data


class IssuedCertificateSerializer(serializers.ModelSerializer[IssuedCertificate]):
    namespace = serializers.CharField(source="namespace.name")

    class Meta:
        model = IssuedCertificate
        fields = [
            "serial",
            "spiffe_id",
            "namespace",
            "service_account",
            "agent_id",
            "authority",
            "credential",
            "not_before",
            "not_after",
            "issued_at",
        ]
        read_only_fields = fields


class CaChangeRequestSerializer(StrictSerializer):
    """A change to the CA: reviewed by default; applied at once when an admin gives ``emergency_reason``."""

    operation = serializers.ChoiceField(choices=["rotate", "retire"])
    id = StrictCharField(required=False, max_length=64, help_text="The root to retire.")
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, default="")
    emergency_reason = StrictCharField(
        required=False,
        max_length=2000,
        help_text="Apply at once, without approval (admins only): why it cannot wait. Audited and flagged.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["operation"] == "retire" and not attrs.get("id"):
            raise serializers.ValidationError({"id": ["Name the root to retire."]})
        if attrs["operation"] == "rotate" and attrs.get("id"):
            raise serializers.ValidationError({"id": ["A rotation names no root: it makes a new one."]})
        if "emergency_reason" in attrs and not attrs["emergency_reason"].strip():
            raise serializers.ValidationError({"emergency_reason": ["Say why this cannot wait for approval."]})
        return attrs


class CaChangeApprovalSerializer(serializers.ModelSerializer[CaChangeApproval]):
    approver = serializers.CharField(source="approver.username", read_only=True)

    class Meta:
        model = CaChangeApproval
        fields = ["approver", "approved_at"]


class CaChangeSerializer(serializers.ModelSerializer[CaChange]):
    id = serializers.IntegerField(read_only=True)
    root_id = serializers.CharField(source="authority_id", read_only=True, help_text="The root to retire.")
    new_root_id = serializers.CharField(
        source="created_authority_id", read_only=True, help_text="The root a rotation made, once applied."
    )
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True, default=None)
    approvals = CaChangeApprovalSerializer(many=True, read_only=True)

    class Meta:
        model = CaChange
        fields = [
            "id", "operation", "root_id", "new_root_id", "reason", "state", "requested_by", "required_approvals",
            "approvals", "created_at", "expires_at", "decided_by", "decided_at", "decision_reason",
            "emergency_reason",
        ]  # fmt: skip
        read_only_fields = fields


class CaChangeRejectSerializer(StrictSerializer):
    reason = StrictCharField(max_length=2000)


class CaRootSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(allow_null=True)
    fingerprint_sha256 = serializers.CharField()
    subject = serializers.CharField()
    not_after = serializers.DateTimeField()
    signing = serializers.BooleanField()


class CaStatusSerializer(serializers.Serializer[Any]):
    roots = CaRootSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # "read_only" is also a Field attribute, so it cannot be declared on the class.
        fields = super().get_fields()
        fields["read_only"] = serializers.BooleanField(
            help_text="The CA comes from a mounted Secret: rotate by updating it."
        )
        return fields
