"""Base serializers shared by every app's API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models
from django.db.models import Model, QuerySet
from rest_framework import serializers

from meshui.accounts.roles import Capability
from meshui.accounts.scoping import restrict_to_namespaces


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF would quietly turn ``12`` into ``"12"``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON number without a fraction; ``"80"`` and ``true`` are type errors, not integers."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return bool(data)


class StrictModelSerializer(serializers.ModelSerializer[Any]):
    """Refuses fields it does not know, and changes to fields fixed at creation.

    A typo in a field name must be an error, not a silently ignored setting.
    Read-only fields may be sent back unchanged (GET, edit, PUT) and are ignored.
    ``Meta.create_only_fields`` name fields that identify an object and so may
    not change once it exists. JSON types are checked, not coerced.
    """

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.IntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.BooleanField: StrictBooleanField,
    }

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None:
            fixed = getattr(self.Meta, "create_only_fields", ())
            changed = {
                name: ["This field cannot be changed after creation."]
                for name in fixed
                if name in attrs and attrs[name] != getattr(self.instance, name)
            }
            if changed:
                raise serializers.ValidationError(changed)
        return attrs


class _VisibleOnlyMixin:
    """Limits a related field's choices to objects in namespaces the user can see.

    An object in a namespace you cannot see does not exist for you: referring
    to it gives the same 400 as referring to nothing, so names do not leak.
    """

    context: dict[str, Any]

    def get_queryset(self) -> QuerySet[Model]:
        queryset: QuerySet[Model] = super().get_queryset()  # type: ignore[misc]
        request = self.context.get("request")
        if request is None:
            return queryset.none()
        return restrict_to_namespaces(queryset, request.user, Capability.VIEW)


class VisibleSlugRelatedField(_VisibleOnlyMixin, serializers.SlugRelatedField[Any]):
    pass


class VisiblePrimaryKeyRelatedField(_VisibleOnlyMixin, serializers.PrimaryKeyRelatedField[Any]):
    pass
