from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "meshui.identity"
    label = "identity"
    verbose_name = "Workload identity"
