"""State changes driven by agents: register, heartbeat, deregister, expire.

Each runs in one transaction; when it changes any endpoint set it bumps the
mesh config version and, after commit, queues the push of the new snapshot,
so agents never hear of a change that rolled back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from meshui.catalog.models import Agent, AgentStatus, HealthStatus, Instance, Namespace, Service, Workload
from meshui.catalog.registration import Registration
from meshui.rollout.actions import do_bump_version
from meshui.rollout.models import MeshVersion

logger = logging.getLogger(__name__)


def do_register_agent(registration: Registration) -> Agent:
    """Create or refresh the agent, its instance and the catalog objects above them."""
    now = timezone.now()
    with transaction.atomic():
        namespace, _ = Namespace.objects.get_or_create(name=registration.namespace)
        service, _ = Service.objects.get_or_create(namespace=namespace, name=registration.service)
        workload, _ = Workload.objects.update_or_create(
            service=service,
            name=registration.workload,
            defaults={"labels": registration.labels, "service_account": registration.service_account},
        )
        instance, _ = Instance.objects.update_or_create(
            workload=workload,
            address=registration.address,
            port=registration.inbound_port,
            defaults={"health": HealthStatus.HEALTHY, "last_seen": now},
        )
        # A restarted agent with a new id may still own the instance; release it.
        Agent.objects.filter(instance=instance).exclude(agent_id=registration.agent_id).update(
            instance=None, status=AgentStatus.DISCONNECTED
        )
        agent, _ = Agent.objects.update_or_create(
            agent_id=registration.agent_id,
            defaults={
                "namespace": namespace,
                "instance": instance,
                "version": registration.agent_version,
                "admin_address": registration.admin_address,
                "admin_mtls": registration.admin_mtls,
                "status": AgentStatus.CONNECTED,
                "last_heartbeat": now,
                "config_version": None,
            },
        )
        do_bump_version()
    logger.info("agent %s registered for %s.%s at %s", agent.agent_id, service.name, namespace.name, instance)
    return agent


@dataclass(frozen=True)
class HeartbeatResult:
    known: bool
    latest_version: int


def do_record_heartbeat(agent_id: str, applied_version: int, healthy: bool) -> HeartbeatResult:
    """Note the agent alive at ``applied_version``; ``known`` is False when it must register again."""
    now = timezone.now()
    with transaction.atomic():
        agent = (
            Agent.objects.select_for_update(of=("self",)).select_related("instance").filter(agent_id=agent_id).first()
        )
        if agent is None or agent.instance is None or agent.status == AgentStatus.DISCONNECTED:
            return HeartbeatResult(known=False, latest_version=MeshVersion.current())
        agent.last_heartbeat = now
        agent.status = AgentStatus.CONNECTED
        agent.config_version = applied_version
        agent.save(update_fields=["last_heartbeat", "status", "config_version"])
        instance = agent.instance
        health = HealthStatus.HEALTHY if healthy else HealthStatus.UNHEALTHY
        changed = instance.health != health
        instance.health = health
        instance.last_seen = now
        instance.save(update_fields=["health", "last_seen", "updated_at"])
        latest = do_bump_version() if changed else MeshVersion.current()
    return HeartbeatResult(known=True, latest_version=latest)


def do_deregister_agent(agent_id: str) -> bool:
    """Remove the agent's instance from every endpoint set now; False if the agent was unknown."""
    with transaction.atomic():
        agent = (
            Agent.objects.select_for_update(of=("self",)).select_related("instance").filter(agent_id=agent_id).first()
        )
        if agent is None:
            return False
        instance, agent.instance = agent.instance, None
        agent.status = AgentStatus.DISCONNECTED
        agent.save(update_fields=["instance", "status"])
        if instance is not None:
            instance.delete()
        do_bump_version()
    logger.info("agent %s deregistered", agent_id)
    return True


def do_expire_silent_agents(now: datetime, allowed_silence: timedelta) -> list[str]:
    """Mark agents silent for longer than ``allowed_silence`` stale and their instances unhealthy."""
    with transaction.atomic():
        silent = list(
            Agent.objects.select_for_update()
            .filter(status=AgentStatus.CONNECTED, last_heartbeat__lt=now - allowed_silence)
            .values_list("agent_id", "instance_id")
        )
        if not silent:
            return []
        Agent.objects.filter(agent_id__in=[agent_id for agent_id, _ in silent]).update(status=AgentStatus.STALE)
        Instance.objects.filter(pk__in=[pk for _, pk in silent if pk is not None]).update(
            health=HealthStatus.UNHEALTHY, updated_at=now
        )
        do_bump_version()
    expired = [agent_id for agent_id, _ in silent]
    logger.warning("agents missed their heartbeats and were marked stale: %s", ", ".join(expired))
    return expired
