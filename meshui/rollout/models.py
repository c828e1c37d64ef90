"""Config versions and the record of pushing them to agents."""

from __future__ import annotations

from django.db import models


class MeshVersion(models.Model):
    """The mesh-wide config version: one row, bumped by every change that alters any snapshot.

    Agents compare the version they hold with this one; a single counter means
    "behind" is one integer comparison, whatever changed.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"mesh config version {self.version}"

    @classmethod
    def current(cls) -> int:
        value = cls.objects.filter(pk=cls.SINGLETON_ID).values_list("version", flat=True).first()
        return int(value or 0)

    @classmethod
    def bump(cls) -> int:
        """Increment and return the new version. Call inside the transaction that made the change."""
        row, _ = cls.objects.select_for_update().get_or_create(pk=cls.SINGLETON_ID)
        row.version = models.F("version") + 1
        row.save(update_fields=["version", "updated_at"])
        row.refresh_from_db(fields=["version"])
        return int(row.version)


class PushOutcome(models.TextChoices):
    ACKED = "acked"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"


class ConfigPush(models.Model):
    """The push of one snapshot version to one agent, and how it ended: what the agent said, or why it could not.

    One row per agent per rollout, written when the agent's outcome is final
    (after any retries of transport failures; ``attempts`` says how many calls it took).
    """

    namespace_lookup = "agent__namespace_id"

    agent = models.ForeignKey("catalog.Agent", on_delete=models.CASCADE, related_name="pushes")
    version = models.BigIntegerField()
    outcome = models.CharField(max_length=16, choices=PushOutcome.choices)
    detail = models.CharField(max_length=500, blank=True, help_text="The agent's reason, or the transport error.")
    attempts = models.PositiveSmallIntegerField(default=1, help_text="Calls made: retries of transport failures count.")
    pushed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pushed_at", "-id"]
        indexes = [models.Index(fields=["agent", "-pushed_at"], name="push_agent_time")]

    def __str__(self) -> str:
        return f"v{self.version} to {self.agent_id}: {self.outcome}"
