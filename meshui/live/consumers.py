from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

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
