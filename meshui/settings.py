"""Django settings for the meshui control plane.

Everything comes from the environment (see ``meshui.environment`` and the
README's configuration table). Unset variables fall back to embedded defaults
that need no server: SQLite in the data directory and a Redis that the
launcher starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import django_stubs_ext

from meshui import environment as env

# Generic Django and DRF classes (ModelAdmin[Namespace]) are subscripted at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
_environ = os.environ

MESHUI_ENV = env.environment_name(_environ)
PRODUCTION = MESHUI_ENV == "production"
DATA_DIR = env.data_dir(_environ, BASE_DIR / ".data")

DEBUG = env.env_bool(_environ, "MESHUI_DEBUG", default=not PRODUCTION)
SECRET_KEY = env.secret_key(_environ, DATA_DIR, production=PRODUCTION)
ALLOWED_HOSTS = env.env_list(_environ, "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.origins(_environ, "CSRF_TRUSTED_ORIGINS")
MESH_TRUST_DOMAIN = env.trust_domain(_environ)
REDIS_URL = env.redis_url(_environ)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "meshui.accounts",
    "meshui.audit",
    "meshui.catalog",
    "meshui.identity",
    "meshui.policy",
    "meshui.rollout",
    "meshui.meshcontrol",
    "meshui.telemetry",
    "meshui.health",
    "meshui.live",
    "meshui.dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, which also caches the dashboard's hashed assets for good.
    "meshui.dashboard.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "meshui.urls"
ASGI_APPLICATION = "meshui.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.database(_environ, DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Production serves what `collectstatic` gathered; without that step
# (development, tests) WhiteNoise serves straight from the apps' static folders.
STATIC_ROOT = DATA_DIR / "static" if PRODUCTION else None
WHITENOISE_USE_FINDERS = not PRODUCTION
# The browser dashboard, built by `make frontend` (Vite, base /static/dashboard/): its
# index.html is served for the page routes (meshui.dashboard), its assets as static
# files under /static/dashboard/. Listed only once built, so a checkout without the
# build has no missing static directory (staticfiles.W004); build before starting.
DASHBOARD_DIST_DIR = Path(env.env_str(_environ, "MESHUI_DASHBOARD_DIST_DIR", str(BASE_DIR / "frontend" / "dist")))
STATICFILES_DIRS = [("dashboard", DASHBOARD_DIST_DIR)] if DASHBOARD_DIST_DIR.is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# The dashboard's session login (meshui.dashboard); /api/auth/login/ (DRF's) still works.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# --- security -------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.env_bool(_environ, "MESHUI_SSL_REDIRECT", default=True)
    # Probes from the kubelet speak plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.env_int(_environ, "MESHUI_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env.env_bool(_environ, "MESHUI_BEHIND_TLS_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if not SECURE_SSL_REDIRECT:
        # The TLS-terminating proxy redirects instead; tell Django's deploy check so.
        SILENCED_SYSTEM_CHECKS = ["security.W008"]

# --- REST API -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "meshui.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "meshui.api.pagination.MeshPageNumberPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": (
        ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"]
    ),
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "meshui.api.errors.mesh_exception_handler",
    "DEFAULT_VERSIONING_CLASS": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "meshui control plane API",
    "DESCRIPTION": (
        "Services, workloads, instances and agents of the mesh; its traces and service graph; "
        "accounts, roles, tokens and the audit log."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"GraphHealthEnum": "meshui.telemetry.serializers.GRAPH_HEALTH"},
}

# --- Channels and Celery (both on Redis) --------------------------------------
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = env.env_int(_environ, "MESHUI_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# Redis redelivers a message a killed worker had taken (late acks) once it has been unacked this long;
# it must exceed the longest task, or a running task starts a second time.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": env.env_int(_environ, "MESHUI_CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    "unacked_restore_interval": env.env_int(_environ, "MESHUI_CELERY_RESTORE_INTERVAL", 10, minimum=1),
}

# --- mesh control (gRPC) ----------------------------------------------------------
MESH_GRPC_BIND = env.env_str(_environ, "MESH_GRPC_BIND", "127.0.0.1:15010")
MESH_HEARTBEAT_INTERVAL_SECONDS = env.env_int(_environ, "MESH_HEARTBEAT_INTERVAL_SECONDS", 5, minimum=1)
# An agent silent for this many intervals is stale: its instance leaves every endpoint set.
MESH_MISSED_HEARTBEATS = env.env_int(_environ, "MESH_MISSED_HEARTBEATS", 3, minimum=1)
MESH_PUSH_TIMEOUT_SECONDS = env.env_int(_environ, "MESH_PUSH_TIMEOUT_SECONDS", 5, minimum=1)
# OTLP ingest: the largest export request accepted, the spans that may wait to be stored, spans per transaction.
MESH_OTLP_MAX_MESSAGE_BYTES = env.env_int(_environ, "MESH_OTLP_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=1024)
MESH_SPAN_INGEST_MAX_PENDING = env.env_int(_environ, "MESH_SPAN_INGEST_MAX_PENDING", 100_000, minimum=1)
MESH_SPAN_INGEST_BATCH = env.env_int(_environ, "MESH_SPAN_INGEST_BATCH", 2000, minimum=1)
# Batches stored at once on PostgreSQL (SQLite always takes one).
MESH_SPAN_INGEST_WRITERS = env.env_int(_environ, "MESH_SPAN_INGEST_WRITERS", 2, minimum=1)
# Re-export everything received to another OTLP/gRPC endpoint (host:port; empty: off).
MESH_OTLP_FORWARD_ENDPOINT = env.env_str(_environ, "MESH_OTLP_FORWARD_ENDPOINT", "")
MESH_METRICS_MAX_PENDING_SERIES = env.env_int(_environ, "MESH_METRICS_MAX_PENDING_SERIES", 100_000, minimum=1)
# Span retention, enforced by Celery beat: by age, then by count (oldest first).
MESH_SPAN_RETENTION_HOURS = env.env_int(_environ, "MESH_SPAN_RETENTION_HOURS", 24, minimum=1)
MESH_SPAN_MAX_ROWS = env.env_int(_environ, "MESH_SPAN_MAX_ROWS", 5_000_000, minimum=1)
MESH_RETENTION_INTERVAL_SECONDS = env.env_int(_environ, "MESH_RETENTION_INTERVAL_SECONDS", 300, minimum=1)
# Graph health from the error rate (5xx and mesh errors): Kiali's defaults.
MESH_HEALTH_DEGRADED_ERROR_RATE = env.env_float(_environ, "MESH_HEALTH_DEGRADED_ERROR_RATE", 0.001)
MESH_HEALTH_FAILING_ERROR_RATE = env.env_float(_environ, "MESH_HEALTH_FAILING_ERROR_RATE", 0.10)
# Edge metrics: 10 s buckets for a day, 1-minute rollups for a week.
MESH_METRICS_RAW_RETENTION_HOURS = env.env_int(_environ, "MESH_METRICS_RAW_RETENTION_HOURS", 24, minimum=2)
MESH_METRICS_ROLLUP_RETENTION_DAYS = env.env_int(_environ, "MESH_METRICS_ROLLUP_RETENTION_DAYS", 7, minimum=1)
# --- workload identity (the mesh's CA) ----------------------------------------------
# Generated on first start into MESH_CA_DIR; or read from a mounted Secret (MESH_CA_CERT_FILE holds the
# signing certificate and its chain up to the root, MESH_CA_KEY_FILE its key, MESH_CA_BUNDLE_FILE
# roots still trusted during a rotation).
MESH_CA_DIR = env.env_str(_environ, "MESH_CA_DIR", str(DATA_DIR / "ca"))
MESH_CA_CERT_FILE = env.env_str(_environ, "MESH_CA_CERT_FILE", "")
MESH_CA_KEY_FILE = env.env_str(_environ, "MESH_CA_KEY_FILE", "")
MESH_CA_BUNDLE_FILE = env.env_str(_environ, "MESH_CA_BUNDLE_FILE", "")
# Sign workload certificates with an intermediate, keeping the root's key for yearly use.
MESH_CA_INTERMEDIATE = env.env_bool(_environ, "MESH_CA_INTERMEDIATE", False)
MESH_CERT_TTL_HOURS = env.env_int(_environ, "MESH_CERT_TTL_HOURS", 24, minimum=1)
MESH_JOIN_TOKEN_TTL_HOURS = env.env_int(_environ, "MESH_JOIN_TOKEN_TTL_HOURS", 24, minimum=1)
# MeshControl over TLS, with a certificate from the mesh's CA naming these hosts (what agents dial).
MESH_GRPC_TLS = env.env_bool(_environ, "MESH_GRPC_TLS", False)
MESH_GRPC_TLS_HOSTS = tuple(env.env_list(_environ, "MESH_GRPC_TLS_HOSTS", ["localhost", "127.0.0.1"]))
# The control plane's own identity: spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
MESH_CONTROL_NAMESPACE = env.env_str(_environ, "MESH_CONTROL_NAMESPACE", "mesh-system")
MESH_CONTROL_SERVICE_ACCOUNT = env.env_str(_environ, "MESH_CONTROL_SERVICE_ACCOUNT", "meshui-control")

# Cluster mode: agents may prove who they are with a projected Kubernetes service-account token for this
# audience, checked with the API server's TokenReview (MESH_KUBECONFIG, or the pod's in-cluster config).
MESH_KUBERNETES_TOKENS = env.env_bool(_environ, "MESH_KUBERNETES_TOKENS", False)
MESH_KUBERNETES_TOKEN_AUDIENCE = env.env_str(_environ, "MESH_KUBERNETES_TOKEN_AUDIENCE", "meshui")
MESH_KUBECONFIG = env.env_str(_environ, "MESH_KUBECONFIG", "")

# End-user JWT key sets (RequestAuthentication): refetched this often; plain http only for tests.
MESH_JWKS_REFRESH_SECONDS = env.env_int(_environ, "MESH_JWKS_REFRESH_SECONDS", 300, minimum=10)
MESH_JWKS_ALLOW_HTTP = env.env_bool(_environ, "MESH_JWKS_ALLOW_HTTP", False)

# --- policy changes and rollout ----------------------------------------------------
# A submitted change request nobody decided on expires after this long.
MESH_CHANGE_REQUEST_TTL_HOURS = env.env_int(_environ, "MESH_CHANGE_REQUEST_TTL_HOURS", 72, minimum=1)
# Approvals a change needs in a namespace without its own approval rule.
MESH_DEFAULT_REQUIRED_APPROVALS = env.env_int(_environ, "MESH_DEFAULT_REQUIRED_APPROVALS", 1, minimum=1)
# Pushes in flight at once during a rollout, and tries per agent before it waits for its heartbeat.
MESH_ROLLOUT_PARALLELISM = env.env_int(_environ, "MESH_ROLLOUT_PARALLELISM", 256, minimum=1)
MESH_ROLLOUT_PUSH_ATTEMPTS = env.env_int(_environ, "MESH_ROLLOUT_PUSH_ATTEMPTS", 3, minimum=1)
# Backoff between tries of one push (doubling from the base, with jitter), and open channels kept per worker.
MESH_ROLLOUT_RETRY_BASE_SECONDS = env.env_float(_environ, "MESH_ROLLOUT_RETRY_BASE_SECONDS", 0.2)
MESH_ROLLOUT_RETRY_MAX_SECONDS = env.env_float(_environ, "MESH_ROLLOUT_RETRY_MAX_SECONDS", 2.0)
MESH_ROLLOUT_MAX_CHANNELS = env.env_int(_environ, "MESH_ROLLOUT_MAX_CHANNELS", 4096, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "prune-spans": {"task": "meshui.telemetry.prune_spans", "schedule": float(MESH_RETENTION_INTERVAL_SECONDS)},
    "prune-metrics": {"task": "meshui.telemetry.prune_metrics", "schedule": float(MESH_RETENTION_INTERVAL_SECONDS)},
    "roll-up-metrics": {"task": "meshui.telemetry.roll_up_metrics", "schedule": 60.0},
    "expire-change-requests": {"task": "meshui.policy.expire_change_requests", "schedule": 300.0},
    "expire-ca-changes": {"task": "meshui.identity.expire_ca_changes", "schedule": 300.0},
    "refresh-jwks": {"task": "meshui.policy.refresh_jwks", "schedule": float(MESH_JWKS_REFRESH_SECONDS)},
}

# --- accounts -----------------------------------------------------------------
# A token's last-used time is written at most this often, so a busy automation
# client does not turn every API read into a database write.
API_TOKEN_LAST_USED_RESOLUTION_SECONDS = 60

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.env_str(_environ, "MESHUI_LOG_LEVEL", "INFO").upper()},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
