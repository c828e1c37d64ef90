"""The policy API's shapes. Input is strict (unknown keys are errors); the rules live in ``changes.py``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from meshui.api.serializers import StrictCharField, VisibleSlugRelatedField
from meshui.catalog.models import Namespace
from meshui.policy.items import ProposedItem
from meshui.policy.models import (
    Approval,
    ApprovalRule,
    ChangeComment,
    ChangeItem,
    ChangeOperation,
    ChangeRequest,
    ConfigVersion,
    Policy,
    PolicyKind,
)
from meshui.policy.validation import StrictSerializer


class PolicySerializer(serializers.ModelSerializer[Policy]):
    namespace = serializers.CharField(source="namespace.name")
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = Policy
        fields = ["id", "kind", "namespace", "name", "service", "spec", "version", "updated_at"]
        read_only_fields = fields


class ChangeItemInputSerializer(StrictSerializer):
    operation = serializers.ChoiceField(choices=ChangeOperation.choices)
    kind = serializers.ChoiceField(choices=PolicyKind.choices)
    name = StrictCharField(max_length=63)
    service = StrictCharField(max_length=63, required=False, allow_blank=True, default="")
    # Checked against the kind's schema by ``check_item``, with errors under "spec".
    spec = serializers.JSONField(required=False, allow_null=True, default=None)

    def to_proposed(self, data: dict[str, Any]) -> ProposedItem:
        return ProposedItem(data["operation"], data["kind"], data["name"], data["service"], data["spec"])


class ChangeItemSerializer(serializers.ModelSerializer[ChangeItem]):
    class Meta:
        model = ChangeItem
        fields = ["operation", "kind", "name", "service", "spec", "base_digest", "warnings"]
        read_only_fields = fields


class ApprovalSerializer(serializers.ModelSerializer[Approval]):
    approver = serializers.CharField(source="approver.get_username")
    current = serializers.SerializerMethodField(help_text="Whether it approved the change's current content.")

    class Meta:
        model = Approval
        fields = ["approver", "digest", "current", "comment", "created_at"]
        read_only_fields = fields

    def get_current(self, approval: Approval) -> bool:
        return approval.digest == approval.change.digest


class CommentSerializer(serializers.ModelSerializer[ChangeComment]):
    author = serializers.CharField(source="author.get_username", read_only=True)
    body = StrictCharField(max_length=5000)

    class Meta:
        model = ChangeComment
        fields = ["id", "author", "body", "created_at"]
        read_only_fields = ["id", "author", "created_at"]


class ChangeRequestSerializer(StrictSerializer):
    """A change request; on write only ``namespace`` (at creation), ``title``, ``description`` and ``items``."""

    id = serializers.IntegerField(read_only=True)
    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all())
    title = StrictCharField(max_length=200)
    description = StrictCharField(max_length=5000, required=False, allow_blank=True, default="")
    items = ChangeItemInputSerializer(many=True, write_only=True)
    state = serializers.CharField(read_only=True)
    digest = serializers.CharField(read_only=True)
    author = serializers.CharField(source="author.get_username", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    submitted_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)
    decided_by = serializers.SerializerMethodField()
    decision_reason = serializers.CharField(read_only=True)
    emergency = serializers.BooleanField(source="is_emergency", read_only=True)
    emergency_reason = serializers.CharField(read_only=True)
    restores = serializers.IntegerField(source="restores.number", read_only=True, default=None)
    applied_version = serializers.IntegerField(source="applied_version.number", read_only=True, default=None)
    required_approvals = serializers.SerializerMethodField()
    approval_count = serializers.IntegerField(read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    comments = CommentSerializer(many=True, read_only=True)

    def get_decided_by(self, change: ChangeRequest) -> str | None:
        return change.decided_by.get_username() if change.decided_by is not None else None

    def get_required_approvals(self, change: ChangeRequest) -> int:
        return ApprovalRule.required_for(change.namespace_id)

    def to_representation(self, instance: ChangeRequest) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["items"] = ChangeItemSerializer(instance.items.all(), many=True).data
        return data

    def proposed_items(self) -> list[ProposedItem]:
        return [ChangeItemInputSerializer().to_proposed(item) for item in self.validated_data["items"]]


class ChangeRequestEditSerializer(StrictSerializer):
    """A partial edit: any of title, description and items."""

    title = StrictCharField(max_length=200, required=False)
    description = StrictCharField(max_length=5000, required=False, allow_blank=True)
    items = ChangeItemInputSerializer(many=True, required=False)
    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all(), required=False)

    def validate_namespace(self, value: Namespace) -> Namespace:
        change: ChangeRequest = self.context["change"]
        if value.pk != change.namespace_id:
            raise serializers.ValidationError("A change request cannot move to another namespace.")
        return value


class ApproveSerializer(StrictSerializer):
    digest = StrictCharField(
        required=False, min_length=64, max_length=64, help_text="The digest of the content you reviewed."
    )
    comment = StrictCharField(required=False, allow_blank=True, max_length=2000, default="")


class RejectSerializer(StrictSerializer):
    reason = StrictCharField(max_length=2000)


class ApplySerializer(StrictSerializer):
    emergency_reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        default="",
        help_text="Admins only: apply without approval, for this written reason (audited, flagged).",
    )


class RollbackSerializer(StrictSerializer):
    namespace = VisibleSlugRelatedField(
        slug_field="name", queryset=Namespace.objects.all(), required=False, help_text="Default: the version's."
    )


class ConfigVersionSerializer(serializers.ModelSerializer[ConfigVersion]):
    namespace = serializers.CharField(source="namespace.name")
    emergency = serializers.BooleanField(source="is_emergency")
    change_request = serializers.SerializerMethodField()

    class Meta:
        model = ConfigVersion
        fields = [
            "number",
            "digest",
            "namespace",
            "summary",
            "author_name",
            "approver_names",
            "applied_by_name",
            "applied_at",
            "emergency",
            "emergency_reason",
            "mesh_version",
            "change_request",
        ]
        read_only_fields = fields

    def get_change_request(self, version: ConfigVersion) -> int | None:
        change = getattr(version, "applied_change", None)
        return change.pk if change is not None else None


class ApprovalRuleSerializer(serializers.ModelSerializer[ApprovalRule]):
    namespace = VisibleSlugRelatedField(slug_field="name", queryset=Namespace.objects.all())

    class Meta:
        model = ApprovalRule
        fields = ["id", "namespace", "required_approvals", "updated_at"]
        read_only_fields = ["id", "updated_at"]


class WarningSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()


class ItemCheckSerializer(serializers.Serializer[Any]):
    warnings = WarningSerializer(many=True)


class ValidationResultSerializer(serializers.Serializer[Any]):
    items = ItemCheckSerializer(many=True)
