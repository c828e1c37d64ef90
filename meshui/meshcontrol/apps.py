from django.apps import AppConfig


class MeshControlConfig(AppConfig):
    name = "meshui.meshcontrol"
    label = "meshcontrol"
    verbose_name = "Mesh control (gRPC)"
