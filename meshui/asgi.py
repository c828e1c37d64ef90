"""The ASGI entry point: Django for HTTP, Channels consumers for WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshui.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from meshui.live.middleware import RequireAuthenticatedUser  # noqa: E402
from meshui.live.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin first (cross-site WebSocket hijacking), then the session, then a logged-in user.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(RequireAuthenticatedUser(URLRouter(websocket_urlpatterns)))
        ),
    }
)
