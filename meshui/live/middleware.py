"""ASGI middleware for the WebSocket routes."""

from __future__ import annotations

from typing import Any

from meshui.live.consumers import CLOSE_UNAUTHENTICATED

Scope = dict[str, Any]


class RequireAuthenticatedUser:
    """Refuses every WebSocket handshake without a logged-in user, before any consumer exists.

    Sits inside ``AuthMiddlewareStack`` so ``scope["user"]`` is resolved. Refusing
    here, rather than in each consumer, means no route can forget the check, and
    no consumer is created (nor a channel-layer subscription opened) for a
    stranger.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        user = scope.get("user")
        if scope["type"] == "websocket" and (user is None or not user.is_authenticated):
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED})
            return
        await self.inner(scope, receive, send)
