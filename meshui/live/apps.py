from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "meshui.live"
    label = "live"
    verbose_name = "Live updates"
