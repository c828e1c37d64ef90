from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from meshui.accounts.models import ApiToken, RoleBinding
from meshui.api.serializers import StrictModelSerializer, VisibleSlugRelatedField
from meshui.catalog.models import Namespace

User = get_user_model()


class UserSerializer(StrictModelSerializer):
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})
    groups = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), many=True, required=False)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "is_superuser",
            "groups",
            "password",
            "last_login",
            "date_joined",
        ]
        read_only_fields = ["is_superuser", "last_login", "date_joined"]
        create_only_fields = ["username"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        password = attrs.get("password")
        if password is not None:
            candidate = self.instance or User(**{k: v for k, v in attrs.items() if k not in {"password", "groups"}})
            try:
                password_validation.validate_password(password, candidate)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Any:
        password = validated_data.pop("password", None)
        groups = validated_data.pop("groups", [])
        user = User(**validated_data)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        user.groups.set(groups)
        return user

    def update(self, instance: Any, validated_data: dict[str, Any]) -> Any:
        password = validated_data.pop("password", None)
        if password:
            instance.set_password(password)
        return super().update(instance, validated_data)


class GroupSerializer(StrictModelSerializer):
    class Meta:
        model = Group
        fields = ["id", "name"]


class RoleBindingSerializer(StrictModelSerializer):
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.all(), required=False, allow_null=True
    )
    group = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False, allow_null=True
    )
    namespace = VisibleSlugRelatedField(
        slug_field="name",
        queryset=Namespace.objects.all(),
        required=False,
        allow_null=True,
        help_text="Empty (null) grants the role in every namespace.",
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = RoleBinding
        fields = ["id", "user", "group", "role", "namespace", "created_at", "created_by"]
        validators: list[Any] = []  # the subject check below gives a clearer message than the DB constraints

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        user, group = attrs.get("user"), attrs.get("group")
        if (user is None) == (group is None):
            raise serializers.ValidationError({"user": ["Give exactly one of user or group."]})
        subject = {"user": user} if user is not None else {"group": group}
        if RoleBinding.objects.filter(**subject, role=attrs["role"], namespace=attrs.get("namespace")).exists():
            raise serializers.ValidationError({"role": ["This role is already granted there."]})
        return attrs


class ApiTokenSerializer(StrictModelSerializer):
    user: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="username", read_only=True)
    token = serializers.SerializerMethodField(help_text="The secret; returned once, when the token is created.")

    class Meta:
        model = ApiToken
        fields = ["id", "user", "name", "prefix", "token", "created_at", "expires_at", "revoked_at", "last_used_at"]
        read_only_fields = ["prefix", "created_at", "revoked_at", "last_used_at"]

    def get_token(self, obj: ApiToken) -> str | None:
        return getattr(obj, "plain_secret", None)

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value

    def create(self, validated_data: dict[str, Any]) -> ApiToken:
        token, plain = ApiToken.issue(
            self.context["request"].user, validated_data["name"], validated_data.get("expires_at")
        )
        token.plain_secret = plain  # type: ignore[attr-defined]
        return token


class NamespaceCapabilitiesSerializer(serializers.Serializer[Any]):
    namespace = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())


class MeSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    is_superuser = serializers.BooleanField()
    capabilities_everywhere = serializers.ListField(child=serializers.CharField())
    namespaces = NamespaceCapabilitiesSerializer(many=True)
