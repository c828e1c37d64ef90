"""Page routes of the dashboard, and the session login and logout that guard them."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from meshui.dashboard import views

# The app's own router owns everything below these prefixes (a trace id, a service id,
# `/traces/compare?a=..&b=..`): Django answers them all with the app's index.html.
SPA_PREFIXES = ("graph", "traces", "services", "agents", "policies", "changes", "versions", "identity")

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="dashboard/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    # POST only (Django's LogoutView refuses GET); redirects to LOGOUT_REDIRECT_URL.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.index, name="dashboard"),
    re_path(rf"^(?:{'|'.join(SPA_PREFIXES)})(?:/.*)?$", views.index, name="dashboard-page"),
]
