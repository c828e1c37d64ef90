from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "meshui.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry (spans and traces)"
