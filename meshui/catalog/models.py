"""The mesh's inventory: namespaces, services, their workloads, the instances
that run them and the sidecar agents in front of each instance."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from meshui.catalog.validators import DNS_LABEL_MAX, dns_label, validate_host, validate_labels, validate_ports


class Namespace(models.Model):
    """An isolation and ownership boundary; roles are granted per namespace."""

    namespace_lookup = "id"

    name = models.CharField(max_length=DNS_LABEL_MAX, unique=True, validators=[dns_label])
    labels = models.JSONField(default=dict, blank=True, validators=[validate_labels])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def namespace_pk(self) -> int:
        return self.pk


class LoadBalancer(models.TextChoices):
    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"


class Service(models.Model):
    """A named, addressable set of workloads, reached by callers as ``<name>.<namespace>``."""

    namespace_lookup = "namespace_id"

    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="services")
    name = models.CharField(max_length=DNS_LABEL_MAX, validators=[dns_label])
    ports = models.JSONField(default=list, blank=True, validators=[validate_ports])
    labels = models.JSONField(default=dict, blank=True, validators=[validate_labels])
    load_balancer = models.CharField(
        max_length=16,
        choices=LoadBalancer.choices,
        default=LoadBalancer.ROUND_ROBIN,
        help_text="How callers' agents spread requests over this service's healthy instances.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["namespace__name", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="service_unique_name_per_namespace")]

    def __str__(self) -> str:
        return f"{self.name}.{self.namespace.name}"

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id


class Workload(models.Model):
    """A deployable version of a service (``reviews`` v1 and v2 are two workloads of one service)."""

    namespace_lookup = "service__namespace_id"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="workloads")
    name = models.CharField(max_length=DNS_LABEL_MAX, validators=[dns_label])
    labels = models.JSONField(default=dict, blank=True, validators=[validate_labels])
    service_account = models.CharField(max_length=DNS_LABEL_MAX, default="default", validators=[dns_label])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service__namespace__name", "service__name", "name"]
        constraints = [models.UniqueConstraint(fields=["service", "name"], name="workload_unique_name_per_service")]

    def __str__(self) -> str:
        return f"{self.name} ({self.service})"

    @property
    def namespace_pk(self) -> int:
        return self.service.namespace_id

    @property
    def version(self) -> str | None:
        """The ``version`` label, used for canary splits; ``None`` when the workload has none."""
        value = self.labels.get("version")
        return value if isinstance(value, str) else None


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Instance(models.Model):
    """One running copy of a workload at an address: an endpoint that traffic is balanced over."""

    namespace_lookup = "workload__service__namespace_id"

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="instances")
    address = models.CharField(max_length=253, validators=[validate_host])
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    health = models.CharField(max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN)
    last_seen = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workload_id", "address", "port"]
        constraints = [
            models.UniqueConstraint(fields=["workload", "address", "port"], name="instance_unique_address"),
            models.CheckConstraint(condition=models.Q(port__gte=1, port__lte=65535), name="instance_port_in_range"),
        ]
        indexes = [models.Index(fields=["health", "last_seen"], name="instance_health_seen")]

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def namespace_pk(self) -> int:
        return self.workload.service.namespace_id


class AgentStatus(models.TextChoices):
    CONNECTED = "connected"
    STALE = "stale"
    DISCONNECTED = "disconnected"


class Agent(models.Model):
    """The sidecar proxy in front of one instance, as the control plane last heard from it."""

    namespace_lookup = "namespace_id"

    agent_id = models.CharField(max_length=128, unique=True)
    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="agents")
    instance = models.OneToOneField(Instance, on_delete=models.SET_NULL, null=True, blank=True, related_name="agent")
    version = models.CharField(max_length=64, blank=True, help_text="The agent's software version.")
    admin_address = models.CharField(max_length=300, blank=True, help_text="host:port of the agent's admin gRPC.")
    admin_mtls = models.BooleanField(
        default=False, help_text="The admin gRPC takes only mutual TLS from the control plane's identity."
    )
    config_version = models.BigIntegerField(
        null=True, blank=True, help_text="The config snapshot version the agent last acknowledged."
    )
    status = models.CharField(max_length=16, choices=AgentStatus.choices, default=AgentStatus.CONNECTED)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent_id"]
        indexes = [models.Index(fields=["status", "last_heartbeat"], name="agent_status_heartbeat")]

    def __str__(self) -> str:
        return self.agent_id

    @property
    def namespace_pk(self) -> int:
        return self.namespace_id
