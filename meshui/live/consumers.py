from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from meshui.accounts.models import namespace_access
from meshui.accounts.roles import Capability
from meshui.catalog.models import Agent, AgentStatus, Namespace
from meshui.rollout.models import MeshVersion
from meshui.rollout.progress import ROLLOUT_GROUP, for_namespaces

# Close codes in the 4000 range are ours to define; 4401 mirrors HTTP 401.
CLOSE_UNAUTHENTICATED = 4401


class PingConsumer(AsyncJsonWebsocketConsumer):
    """Answers ``{"type": "ping"}`` with a pong that travels through the channel layer.

    Going through the layer (Redis) rather than replying directly proves the
    whole live-update path works, which is what later live consumers rely on.
    Only logged-in users get here (``RequireAuthenticatedUser``).
    """

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self.send_json({"type": "error", "detail": 'Send {"type": "ping"}.'})
            return
        await self.channel_layer.send(
            self.channel_name, {"type": "pong.reply", "user": self.scope["user"].get_username()}
        )

    async def pong_reply(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "pong", "user": event["user"]})


def _visible_namespaces(user: Any) -> list[str] | None:
    """Names of the namespaces ``user`` may view; None means all of them."""
    ids = namespace_access(user).namespaces_with(Capability.VIEW)
    if ids is None:
        return None
    return list(Namespace.objects.filter(pk__in=ids).values_list("name", flat=True))


def _rollout_status(visible: list[str] | None) -> dict[str, Any]:
    """Where the (visible) connected agents stand against the current mesh version, for a new subscriber."""
    version = MeshVersion.current()
    agents = Agent.objects.filter(status=AgentStatus.CONNECTED)
    if visible is not None:
        agents = agents.filter(namespace__name__in=visible)
    total = agents.count()
    current = agents.filter(config_version__gte=version).count()
    behind = total - current
    return {"type": "rollout_status", "version": version, "agents": total, "current": current, "behind": behind}


class RolloutConsumer(AsyncJsonWebsocketConsumer):
    """``{"type": "subscribe", "topic": "rollout"}``: where the agents stand now, then every rollout's progress.

    After subscribing, a ``rollout_status`` message (the current mesh version,
    connected agents, how many hold it), then a ``rollout_progress`` message
    for each ``rollout.progress`` event the pushes publish (see
    ``meshui.rollout.progress``): running counts, and the agents whose outcome
    just became final. A user who may view some namespaces only sees those
    namespaces' agents and counts. ``{"type": "unsubscribe", "topic": "rollout"}``
    stops them. Only logged-in users reach it (``RequireAuthenticatedUser``).
    """

    async def connect(self) -> None:
        self.subscribed = False
        self.visible: list[str] | None = None
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.subscribed:
            await self.channel_layer.group_discard(ROLLOUT_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if (
            not isinstance(content, dict)
            or content.get("type") not in ("subscribe", "unsubscribe")
            or content.get("topic") != "rollout"
        ):
            await self.send_json({"type": "error", "detail": 'Send {"type": "subscribe", "topic": "rollout"}.'})
            return
        if content["type"] == "unsubscribe":
            if self.subscribed:
                self.subscribed = False
                await self.channel_layer.group_discard(ROLLOUT_GROUP, self.channel_name)
            return
        self.visible = await database_sync_to_async(_visible_namespaces)(self.scope["user"])
        if not self.subscribed:
            # Join first, then read: progress committed in between arrives as well rather than never.
            await self.channel_layer.group_add(ROLLOUT_GROUP, self.channel_name)
            self.subscribed = True
        await self.send_json(await database_sync_to_async(_rollout_status)(self.visible))

    async def rollout_progress(self, event: dict[str, Any]) -> None:
        if self.subscribed:
            message = for_namespaces(event, self.visible)
            if self.visible is None or message["namespaces"]:
                await self.send_json(message)
