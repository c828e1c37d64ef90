from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "meshui.audit"
    label = "audit"
    verbose_name = "Audit log"
