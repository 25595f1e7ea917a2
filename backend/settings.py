"""Settings for every Ephemera process, read only from the environment.

``EPHEMERA_ENV=production`` makes every secret mandatory; in development the
missing ones are generated once into ``var/secrets/`` (mode 0600).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from backend.devsecrets import dev_e2e_public_keys, dev_secret
from backend.env import (
    ConfigError,
    envbool,
    envfloat,
    envint,
    envkey32,
    envlist,
    envsecret,
    envstr,
    parse_tier_numbers,
)
from backend.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("EPHEMERA_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

EPHEMERA_ENV = envstr("EPHEMERA_ENV", "development")
if EPHEMERA_ENV not in {"development", "production"}:
    raise ConfigError(f"EPHEMERA_ENV={EPHEMERA_ENV!r}: use development or production")
PRODUCTION = EPHEMERA_ENV == "production"


def _secret(name: str, *, nbytes: int = 32) -> str:
    value = envsecret(name)
    if value is not None:
        return value
    if PRODUCTION:
        raise ConfigError(f"{name} is required in production (set it or {name}_FILE)")
    return dev_secret(VAR_DIR, name, nbytes=nbytes)


SECRET_KEY = _secret("DJANGO_SECRET_KEY", nbytes=48)
DEBUG = envbool("DJANGO_DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ConfigError("DJANGO_DEBUG must be off in production: it leaks internals in errors")
ALLOWED_HOSTS = envlist(
    "DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)

# --- Ephemera --------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6380/0") or ""
#: With ``REDIS_URL=sentinel://:PASSWORD@host:26379[;sentinel://...]/0``: the
#: name of the master the Sentinels watch.
REDIS_SENTINEL_MASTER = envstr("REDIS_SENTINEL_MASTER")
if REDIS_URL.startswith("sentinel://") and not REDIS_SENTINEL_MASTER:
    raise ConfigError("REDIS_URL is a sentinel:// URL: set REDIS_SENTINEL_MASTER too")
#: ``kid:base64-32-bytes`` entries; the first encrypts, all decrypt.
EPHEMERA_KEYS = envsecret("EPHEMERA_KEYS") or (
    "" if PRODUCTION else f"dev1:{dev_secret(VAR_DIR, 'EPHEMERA_KEY_dev1')}"
)
if not EPHEMERA_KEYS:
    raise ConfigError("EPHEMERA_KEYS is required in production: kid:base64-32-bytes[,...]")
#: The workers' public end-to-end keys, ``kid:base64[@not-after]``, newest first
#: (docs/e2e.md). The web publishes them; their private halves are read by the
#: workers alone (``workers.e2e``), never by this settings module.
EPHEMERA_E2E_PUBLIC_KEYS = envstr("EPHEMERA_E2E_PUBLIC_KEYS") or (
    "" if PRODUCTION else dev_e2e_public_keys(VAR_DIR)
)
#: The name end-to-end envelopes are bound to (their HPKE ``info``).
EPHEMERA_E2E_SERVICE = envstr("EPHEMERA_E2E_SERVICE", "ephemera") or "ephemera"
EPHEMERA_INPUT_TTL = envint("EPHEMERA_INPUT_TTL", 300, minimum=10)
EPHEMERA_RESULT_TTL = envint("EPHEMERA_RESULT_TTL", 600, minimum=10)
#: How long the small status record of a job outlives its result.
EPHEMERA_RECORD_GRACE = envint("EPHEMERA_RECORD_GRACE", 300, minimum=0)
EPHEMERA_MAX_UPLOAD_BYTES = envint("EPHEMERA_MAX_UPLOAD_BYTES", 15 * 1024 * 1024, minimum=1024)
EPHEMERA_MAX_PIXELS = envint("EPHEMERA_MAX_PIXELS", 40_000_000, minimum=1)
EPHEMERA_MAX_SIDE = envint("EPHEMERA_MAX_SIDE", 2048, minimum=16)
EPHEMERA_MAX_WAIT = 60
EPHEMERA_MODEL_DIR = Path(envstr("EPHEMERA_MODEL_DIR", str(VAR_DIR / "models")) or "")
EPHEMERA_MODEL_KEY = envkey32("EPHEMERA_MODEL_KEY")
#: Soft and hard time limits of one job, in seconds.
EPHEMERA_TASK_SOFT_LIMIT = envfloat("EPHEMERA_TASK_SOFT_LIMIT", 100, minimum=0.1)
EPHEMERA_TASK_HARD_LIMIT = envfloat("EPHEMERA_TASK_HARD_LIMIT", 120, minimum=0.2)
if EPHEMERA_TASK_HARD_LIMIT <= EPHEMERA_TASK_SOFT_LIMIT:
    raise ConfigError("EPHEMERA_TASK_HARD_LIMIT must be above EPHEMERA_TASK_SOFT_LIMIT")
# --- Abuse controls (all counters live in Redis, shared by every web replica) ---
#: Submits per minute per client, by tier; 0 means no limit.
EPHEMERA_TIER_RATES = parse_tier_numbers(
    envstr("EPHEMERA_TIER_RATES", "free:10,standard:120,unlimited:0") or "", "EPHEMERA_TIER_RATES"
)
#: Jobs queued or running at once per client, by tier; 0 means no limit.
EPHEMERA_TIER_IN_FLIGHT = parse_tier_numbers(
    envstr("EPHEMERA_TIER_IN_FLIGHT", "free:4,standard:16,unlimited:0") or "",
    "EPHEMERA_TIER_IN_FLIGHT",
)
#: Requests per minute from one IP address to the API, authenticated or not.
EPHEMERA_IP_RATE = envint("EPHEMERA_IP_RATE", 300, minimum=0)
#: Rejected uploads in a row that block the client and the IP, and for how long.
EPHEMERA_BLOCK_AFTER = envint("EPHEMERA_BLOCK_AFTER", 3, minimum=1)
EPHEMERA_BLOCK_SECONDS = envint("EPHEMERA_BLOCK_SECONDS", 3600, minimum=1)
#: Proxies whose X-Forwarded-For is believed (IPs or CIDRs); nobody else's is.
EPHEMERA_TRUSTED_PROXIES = envlist("EPHEMERA_TRUSTED_PROXIES", [])
#: Origins allowed to call the API from a browser; none by default.
EPHEMERA_CORS_ORIGINS = envlist("EPHEMERA_CORS_ORIGINS", [])
#: When set, /metrics wants ``Authorization: Bearer <token>``.
EPHEMERA_METRICS_TOKEN = envsecret("EPHEMERA_METRICS_TOKEN")
#: Address-space ceiling of each worker child (RLIMIT_AS), in MiB; 0 disables.
EPHEMERA_WORKER_MEMORY_MB = envint("EPHEMERA_WORKER_MEMORY_MB", 6144, minimum=0)

#: Flower's ``user:password``; read here only so the privacy audit can check it.
FLOWER_BASIC_AUTH = envsecret("FLOWER_BASIC_AUTH")
#: Days the audit log keeps its (content-free) events.
EPHEMERA_AUDIT_RETENTION_DAYS = envint("EPHEMERA_AUDIT_RETENTION_DAYS", 30, minimum=1)
#: A fresh process per job (workers.isolation), so no process ever holds two people's photos.
EPHEMERA_ISOLATE_JOBS = envbool("EPHEMERA_ISOLATE_JOBS", default=True)

# Webhooks (backend/webhooks): hosts that may use http and internal addresses
# (a receiver on the operator's own network; the tests' 127.0.0.1), how long a
# job end is retried, and the first retry's delay (doubled each time, at most 1 h).
EPHEMERA_WEBHOOK_ALLOW_HTTP_HOSTS = envlist("EPHEMERA_WEBHOOK_ALLOW_HTTP_HOSTS", [])
EPHEMERA_WEBHOOK_WINDOW = envint("EPHEMERA_WEBHOOK_WINDOW", 24 * 3600, minimum=60)
if EPHEMERA_WEBHOOK_WINDOW > 24 * 3600:
    raise ConfigError("EPHEMERA_WEBHOOK_WINDOW: at most 86400 seconds (24 h)")
EPHEMERA_WEBHOOK_FIRST_RETRY = envint("EPHEMERA_WEBHOOK_FIRST_RETRY", 5, minimum=1)
#: Pool processes per worker node; None lets Celery take the number of cores.
WORKER_CONCURRENCY = envint("WORKER_CONCURRENCY", 0, minimum=0) or None

# --- Django ---------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "backend.clients",
    "backend.audit",
    "backend.jobs",
    "backend.web",
    "workers",
]

MIDDLEWARE = [
    "backend.api.middleware.PlatformHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "backend.api.middleware.ApiGuardMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"

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
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'ephemera.sqlite3'}") or "",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded database of `make run`, written by web and worker processes
    # at once: WAL lets readers and one writer proceed together, IMMEDIATE
    # transactions queue writers (busy timeout) instead of failing on a lock
    # upgrade, and NORMAL sync is durable enough for audit rows and traces.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
# Served by whitenoise straight from the installed apps: no collectstatic step,
# and the root filesystem can stay read-only.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

# Uploads stay in memory at every size: no temporary file ever holds a photo.
FILE_UPLOAD_HANDLERS = ["backend.api.uploads.MemoryOnlyUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = EPHEMERA_MAX_UPLOAD_BYTES
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 20
# The photo, and the reference photo of a two-image task (face_verify).
DATA_UPLOAD_MAX_NUMBER_FILES = 2

# --- Security headers -----------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = envint("EPHEMERA_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
if envbool("EPHEMERA_BEHIND_TLS_PROXY", default=PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST framework -------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["backend.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.MultiPartParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backend.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["backend.api.throttling.BlockedClientThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ephemera API",
    "DESCRIPTION": "Upload a portrait, get it transformed once; nothing is kept.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "backend.api.schema.complete_contract",
    ],
}

# --- Logging --------------------------------------------------------------
LOG_LEVEL = envstr("LOG_LEVEL", "INFO") or "INFO"
LOGGING = logging_config(LOG_LEVEL)
CSRF_FAILURE_VIEW = "backend.api.errors.csrf_failure"
