"""Liveness and readiness probes.

These two answer without authentication because the kubelet and load
balancers call them; they say only "ok" or which dependency is down, never
an address or an error message.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from meshui.health import checks


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    results = {"database": checks.database_ok(), "redis": checks.redis_ok()}
    ready = all(results.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: "ok" if ok else "unreachable" for name, ok in results.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)
