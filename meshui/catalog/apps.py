from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "meshui.catalog"
    label = "catalog"
    verbose_name = "Service catalog"
