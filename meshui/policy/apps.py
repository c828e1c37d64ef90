from django.apps import AppConfig


class PolicyConfig(AppConfig):
    name = "meshui.policy"
    label = "policy"
    verbose_name = "Traffic, authorization and peer authentication policy"
