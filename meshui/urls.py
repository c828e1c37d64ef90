from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from meshui.health.views import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # A browser without a session is sent to the login page rather than shown a bare 403.
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("api/v1/", include("meshui.api.urls")),
    # The browser dashboard (/ and the pages in meshui.dashboard.urls.SPA_PREFIXES) and /login/, /logout/.
    path("", include("meshui.dashboard.urls")),
]
