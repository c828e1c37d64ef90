from django.urls import path

from meshui.live.consumers import PingConsumer, RolloutConsumer
from meshui.telemetry.live import LiveGraphConsumer

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    path("ws/live/", LiveGraphConsumer.as_asgi()),
    path("ws/rollout/", RolloutConsumer.as_asgi()),
]
