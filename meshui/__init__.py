"""meshui: the control plane of the mesh."""

# Loaded with Django so that @shared_task binds to this app and its base task class.
from meshui.celery import app as celery_app

__all__ = ("celery_app",)
