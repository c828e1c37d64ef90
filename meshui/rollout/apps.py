from django.apps import AppConfig


class RolloutConfig(AppConfig):
    name = "meshui.rollout"
    label = "rollout"
    verbose_name = "Config rollout"
