from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "meshui.health"
    label = "health"
    verbose_name = "Health"
