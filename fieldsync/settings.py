"""One settings module for every environment, driven by environment variables.

Defaults are the safe production ones: DEBUG off, HTTPS-only cookies, HSTS. A local
demo opts out with DEBUG=true and FIELDSYNC_HTTPS=false (the Makefile does that).
"""
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """Turn postgres://user:pass@host:port/name?opt=v into a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "postgis"}:
        raise ImproperlyConfigured("DATABASE_URL must be a postgres:// URL (PostGIS is required)")
    options = dict(parse_qsl(parts.query))
    return {
        "ENGINE": "django.contrib.gis.db.backends.postgis",
        "NAME": unquote(parts.path.lstrip("/")) or "fieldsync",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
        # Persistent connections: a push is a handful of statements, so connecting
        # per request would dominate its cost.
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 300),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": os.environ.get("DATABASE_TEST_NAME") or None},
    }


DEBUG = env_bool("DEBUG", False)
HTTPS = env_bool("FIELDSYNC_HTTPS", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-" + "x" * 60

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "rest_framework",
    "rest_framework_gis",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "leaflet",
    "fieldsync.sync",
    "warden_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app servers themselves: no CDN, and nginx optional.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Benchmarks mount a baseline endpoint beside the project (bench/urls.py).
ROOT_URLCONF = os.environ.get("FIELDSYNC_URLCONF", "fieldsync.urls")
WSGI_APPLICATION = "fieldsync.wsgi.application"

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

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fieldsync")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "warden_app.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# guardian: no anonymous user row; permissions are asked through our plain functions.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # Its own database index: clearing the cache never touches the Celery queues.
        "LOCATION": os.environ.get("REDIS_CACHE_URL", REDIS_URL.rsplit("/", 1)[0] + "/1"),
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "fieldsync"),
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
# Nothing reads task results (state lives in the database), and storing them would make
# queuing from a request wait on Redis when it is down.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must never hang a sync request when Redis is down: fail fast, catch up later.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "socket_timeout": 1}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "fieldsync.sync.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "fieldsync API",
    "DESCRIPTION": "Offline sync for community wardens and PCSOs, review and analysis.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Map tiles come only from here: the machines may have no internet, so no default
# points at a public tile server unless an operator configures one.
TILE_URL = os.environ.get("TILE_URL", "")
TILE_ATTRIBUTION = os.environ.get("TILE_ATTRIBUTION", "")
LEAFLET_CONFIG = {
    "DEFAULT_CENTER": (53.52, -2.58),
    "DEFAULT_ZOOM": 12,
    "TILES": [("Base map", TILE_URL, {"attribution": TILE_ATTRIBUTION})] if TILE_URL else [],
    "RESET_VIEW": False,
    "NO_GLOBALS": False,
}

# --- sync protocol limits (docs/sync-protocol.md section 3) ---
SYNC_MAX_MUTATIONS = env_int("SYNC_MAX_MUTATIONS", 500)
SYNC_MAX_BODY_BYTES = env_int("SYNC_MAX_BODY_BYTES", 2 * 1024 * 1024)
SYNC_MAX_ATTACHMENT_BYTES = env_int("SYNC_MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024)
SYNC_WINDOW_DAYS = env_int("SYNC_WINDOW_DAYS", 30)
SYNC_PULL_MAX_LIMIT = env_int("SYNC_PULL_MAX_LIMIT", 1000)
SYNC_LOCATION_TOLERANCE_M = float(os.environ.get("SYNC_LOCATION_TOLERANCE_M", "10"))
SYNC_MAX_CLOCK_SKEW_S = env_int("SYNC_MAX_CLOCK_SKEW_S", 300)
SYNC_DEVICE_RATE = os.environ.get("SYNC_DEVICE_RATE", "120/min")
# Django's own body limit must let a full push through; the sync views enforce theirs.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(SYNC_MAX_BODY_BYTES, SYNC_MAX_ATTACHMENT_BYTES) + 1024

# --- security: production defaults, relaxed only by FIELDSYNC_HTTPS=false for local http ---
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# gis.W001: GDAL older than 3.9 (Debian 12 ships 3.6) cannot stop SpatialReference from
# reading files or URLs named in a spatial reference *string*. fieldsync builds spatial
# references only from integer SRIDs, and Django rejects external CRS members in GeoJSON
# input whatever the GDAL version; client-supplied CRS names (e.g. OGC API `crs`) must be
# mapped to an allow-list of SRIDs, never passed to GDAL. Drop this once GDAL >= 3.9.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
SYNC_ENROL_RATE = os.environ.get("SYNC_ENROL_RATE", "10/min")

# --- periodic tasks (celery beat) ---
# Thumbnails of photos that arrived while the broker was down (their task was never queued).
CELERY_BEAT_SCHEDULE = {
    "thumbnails-catch-up": {
        "task": "fieldsync.sync.tasks.thumbnails_catch_up",
        "schedule": 5 * 60.0,
    },
}
