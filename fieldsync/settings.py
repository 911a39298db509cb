"""One settings module for every environment, driven by environment variables.

Defaults are the safe production ones: DEBUG off, HTTPS-only cookies, HSTS. A local
demo opts out with DEBUG=true and FIELDSYNC_HTTPS=false (the Makefile does that).
"""
import os
import re
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
    options: dict = dict(parse_qsl(parts.query))
    # Server-side prepared statements for the engine's raw cursors (the push's and pull's
    # dozen statements each, planned once per connection instead of once per request).
    # Django's default is none, for PgBouncer in transaction mode before 1.21: set
    # DATABASE_PREPARE_THRESHOLD=off behind one.
    threshold = options.pop("prepare_threshold", os.environ.get("DATABASE_PREPARE_THRESHOLD", "5"))
    off = str(threshold).lower() in ("off", "none", "false", "no", "")
    options["prepare_threshold"] = None if off else int(threshold)
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
    # django.contrib.admin, whose site gives a signed-in non-staff user the front door's 403
    # page rather than a sign-in form (warden_app/front_door/admin_site.py).
    "warden_app.front_door.admin_site.FieldsyncAdminConfig",
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
    # Content-Security-Policy and Permissions-Policy (fieldsync/security_headers.py); after
    # WhiteNoise, which answers static files itself, and before the rest so that their own
    # answers (CSRF refusals, redirects) carry the headers too.
    "fieldsync.security_headers.SecurityHeadersMiddleware",
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
                "warden_app.review_desk.context.desk_reader",
                "warden_app.front_door.context.site_doors",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fieldsync")
    )
}
# A streaming replica of the primary, read ONLY for analyst outputs that hold no personal
# data (aggregates, hotspots): fieldsync/db_router.py says how a selector asks for it.
# Read-only at the session level too, so a misrouted write fails instead of diverging.
if os.environ.get("DATABASE_REPLICA_URL"):
    DATABASES["replica"] = database_from_url(os.environ["DATABASE_REPLICA_URL"])
    DATABASES["replica"]["OPTIONS"].setdefault("options", "-c default_transaction_read_only=on")
    # Tests read the replica alias from the test database of the primary.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["fieldsync.db_router.PrimaryReplicaRouter"]
# Two database roles (docs/accountability.md, deploy/README.md): DATABASE_URL is the
# application's (server, worker, beat): it owns no table and may only INSERT and SELECT the
# access log. DATABASE_OWNER_URL, set for `manage.py migrate` only, is the role that owns
# every table and runs the migrations; after each migrate it grants the application's role
# what it needs (warden_app/db_roles.py). Unset: one role does both (tests, old set-ups).
DATABASE_OWNER = (
    database_from_url(os.environ["DATABASE_OWNER_URL"]) if os.environ.get("DATABASE_OWNER_URL") else None
)
# The role granted to; by default DATABASE_URL's user, when an owner URL is set.
DATABASE_APP_ROLE = os.environ.get("DATABASE_APP_ROLE") or (
    DATABASES["default"]["USER"] if DATABASE_OWNER else ""
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "warden_app.User"
AUTHENTICATION_BACKENDS = [
    # ModelBackend with the brute-force guard around the password check (fieldsync/login_guard.py).
    "fieldsync.login_guard.GuardedModelBackend",
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

# Photos and thumbnails: local disk (MEDIA_ROOT) by default; FIELDSYNC_STORAGE=s3 keeps them in
# an S3-compatible bucket (AWS, MinIO, Ceph…) so app servers and workers share no disk.
# Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web
# identity, instance role), never from settings. Photos are personal data: the bucket stays
# private and URLs are short-lived signatures.
FIELDSYNC_STORAGE = os.environ.get("FIELDSYNC_STORAGE", "filesystem")
if FIELDSYNC_STORAGE == "filesystem":
    # No OPTIONS: the storage follows MEDIA_ROOT, also when a test changes it.
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif FIELDSYNC_STORAGE == "s3":
    if not os.environ.get("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured("FIELDSYNC_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            # MinIO and most self-hosted stores want "path".
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
            "location": os.environ.get("AWS_LOCATION", ""),
            "default_acl": None,  # the bucket's own (private) policy decides
            "querystring_auth": True,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 300),
        },
    }
else:
    raise ImproperlyConfigured(f"FIELDSYNC_STORAGE must be filesystem or s3, not {FIELDSYNC_STORAGE!r}")
STORAGES = {
    "default": _media_storage,
    # Static files stay on the app's disk: nginx serves /static/ (whitenoise without nginx).
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Its own database index: clearing the cache never touches the Celery queues.
REDIS_CACHE_URL = os.environ.get("REDIS_CACHE_URL", REDIS_URL.rsplit("/", 1)[0] + "/1")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)


def _apart_from_the_demo(url: str) -> str:
    """Redis databases 0 and 1 (make run's broker and cache, deploy/local/ensure-db.sh) as 2
    and 3; any other database number as it is (a checkout given numbers of its own)."""
    found = re.fullmatch(r"(rediss?://[^/]*)(?:/(\d*))?", url)
    if not found:
        return url
    number = int(found.group(2) or 0)
    moved = {0: 2, 1: 3}.get(number, number)
    return f"{found.group(1)}/{moved}"


# Under pytest (which sets PYTEST_VERSION before anything is imported) tests never share
# Redis with make run: tasks a test queued would otherwise wait on make run's broker and its
# worker would run them against the wrong database (Export DoesNotExist), and a test's
# cache.clear() would empty the demo's cache. Written back to the environment too: Celery
# reads CELERY_BROKER_URL from there ahead of these settings, and servers a test starts in a
# subprocess inherit it.
if os.environ.get("PYTEST_VERSION"):
    REDIS_URL, REDIS_CACHE_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND = (
        _apart_from_the_demo(url) for url in (REDIS_URL, REDIS_CACHE_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND))
    os.environ.update(REDIS_URL=REDIS_URL, REDIS_CACHE_URL=REDIS_CACHE_URL, CELERY_BROKER_URL=CELERY_BROKER_URL,
                      CELERY_RESULT_BACKEND=CELERY_RESULT_BACKEND)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_CACHE_URL,
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "fieldsync"),
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}

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
        # DRF's Basic, with the credentials parsed strictly (fieldsync/parsing.py). First: DRF
        # answers 401 with the first class's challenge, and a session has none (it was 403
        # without a challenge, so QGIS, GDAL and curl never asked for a password).
        "fieldsync.basic_auth.StrictBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "fieldsync.errors.exception_handler",
    # Bounded in bytes and depth, refusals in the protocol's shape (fieldsync/sync/bodies.py).
    # No multipart: no API view takes files (photos are PUT raw, read by AttachmentView).
    "DEFAULT_PARSER_CLASSES": [
        "fieldsync.sync.bodies.BoundedJSONParser",
        "fieldsync.sync.bodies.BoundedFormParser",
    ],
    # JSON only: every API answer, errors included, is in the protocol's shape, whatever the
    # client's Accept says (DRF's browsable HTML pages would answer `text/html` with HTML
    # errors). The API is described at /api/docs/; GeoJSON, CSV and OpenAPI views name theirs.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
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
# Base maps imported with `manage.py import_basemap` live here (local disk: tiles are read by
# seeking in the file), served at /tiles/<version>/… The base map in use (the last imported,
# or the one chosen with `import_basemap --use`) wins over TILE_URL (docs/maps.md).
BASEMAP_DIR = Path(os.environ.get("BASEMAP_DIR", BASE_DIR / "var" / "basemaps"))
# Which TILE_URL page policies allow images from: none while an imported base map is in use.
MAP_TILE_URL_IN_USE = "warden_app.basemaps.config.external_tile_url"
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
# Photos are priced before decoding (fieldsync/sync/images.py): a declared size needing more
# memory than this to decode and clean (e.g. RGB JPEG or RGBA PNG: 8 bytes a pixel, WebP 28)
# is refused with 413, as is anything over SYNC_MAX_IMAGE_PIXELS. 256 MiB takes a 33
# megapixel JPEG; a worker's peak stays within its idle size plus this (docs/sync.md).
SYNC_MAX_IMAGE_MEMORY_BYTES = env_int("SYNC_MAX_IMAGE_MEMORY_BYTES", 256 * 1024 * 1024)
SYNC_MAX_IMAGE_PIXELS = env_int("SYNC_MAX_IMAGE_PIXELS", 50_000_000)
# How deep JSON may nest (fieldsync/sync/bodies.py): any body past JSON_MAX_DEPTH is refused
# whole (400 too_deep); a push's mutation past SYNC_MAX_MUTATION_DEPTH (its own object is
# level 1; a real one needs 5) is rejected alone. Bodies of the other API views (DRF's
# parsers) are also held to API_MAX_BODY_BYTES.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 64)
SYNC_MAX_MUTATION_DEPTH = env_int("SYNC_MAX_MUTATION_DEPTH", 16)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 2 * 1024 * 1024)
# orjson writes at most 254 levels (receipts, quarantined payloads); a mutation sits two
# levels down in its push, and must be able to be rejected alone.
if not SYNC_MAX_MUTATION_DEPTH + 2 < JSON_MAX_DEPTH <= 250:
    raise ImproperlyConfigured("JSON_MAX_DEPTH must be at most 250 and more than SYNC_MAX_MUTATION_DEPTH + 2")
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
# Database sessions whose key is checked before it is looked up (fieldsync/sessions.py).
SESSION_ENGINE = "fieldsync.sessions"
# Lax, not Strict: links into the review desk (escalations name it, FIELDSYNC_BASE_URL) must
# open signed in; every state change is a POST, which Lax keeps from other sites.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Not HttpOnly: the token is in every form anyway (Django: no practical protection), and the
# Swagger UI page reads the cookie to send X-CSRFToken when trying out an unsafe request.
CSRF_COOKIE_HTTPONLY = False
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
    # A refused request (403, 404, 400) is one line, not a traceback (fieldsync/log_filters.py).
    "filters": {"client_errors_brief": {"()": "fieldsync.log_filters.ClientErrorsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["client_errors_brief"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
SYNC_ENROL_RATE = os.environ.get("SYNC_ENROL_RATE", "10/min")

# --- brute-force guard on password checks (fieldsync/login_guard.py, docs/security.md) ---
# Desk and admin sign-in, device enrolment and HTTP Basic: after LOGIN_FAILURE_LIMIT failures
# for one username from one address, or LOGIN_FAILURE_ADDRESS_LIMIT from one client address,
# within LOGIN_FAILURE_WINDOW seconds of the first, that pair or address is refused until the
# window ends.
# The address limit is higher: a council office or a police station signs in from one address.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_ADDRESS_LIMIT = env_int("LOGIN_FAILURE_ADDRESS_LIMIT", 20)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 15 * 60)
# Slow-down per username, for addresses that are not the account's usual ones (those it
# signed in from within LOGIN_USUAL_ADDRESS_DAYS): one check per 1, 2, 4 ... seconds, at most
# LOGIN_SLOWDOWN_MAX_SECONDS apart; never a lockout of the owner (login_guard.py).
LOGIN_SLOWDOWN_MAX_SECONDS = env_int("LOGIN_SLOWDOWN_MAX_SECONDS", 30)
LOGIN_USUAL_ADDRESS_DAYS = env_int("LOGIN_USUAL_ADDRESS_DAYS", 30)
LOGIN_GUARD_CACHE = "default"

# Personal API tokens (fsp_, warden_app/services/api_tokens.py) stop working this many days
# after they are made; a password change or deactivation ends them sooner.
API_TOKEN_LIFETIME_DAYS = env_int("API_TOKEN_LIFETIME_DAYS", 90)

# --- periodic tasks (celery beat) ---
# Thumbnails of photos that arrived while the broker was down (their task was never queued).
CELERY_BEAT_SCHEDULE = {
    "thumbnails-catch-up": {
        "task": "fieldsync.sync.tasks.thumbnails_catch_up",
        "schedule": 5 * 60.0,
    },
}

# --- analysis: records API, exports, OGC API - Features (docs/analysis.md) ---
# A GeoJSON/CSV read returning more records than this is built by Celery instead of streamed:
# at 40,000-115,000 records/s (bench/export.py) 500,000 stream well within GUNICORN_TIMEOUT (30 s).
ANALYSIS_STREAM_MAX_ROWS = env_int("ANALYSIS_STREAM_MAX_ROWS", 500_000)
ANALYSIS_PAGE_DEFAULT = env_int("ANALYSIS_PAGE_DEFAULT", 100)
ANALYSIS_PAGE_MAX = env_int("ANALYSIS_PAGE_MAX", 10_000)
ANALYSIS_POLYGON_MAX_CHARS = env_int("ANALYSIS_POLYGON_MAX_CHARS", 1_000_000)
ANALYSIS_POLYGON_MAX_POINTS = env_int("ANALYSIS_POLYGON_MAX_POINTS", 100_000)
# Export files hold personal data: deleted this long after they are built.
EXPORT_RETENTION_HOURS = env_int("EXPORT_RETENTION_HOURS", 72)
CELERY_BEAT_SCHEDULE["exports-expire"] = {"task": "warden_app.tasks.exports_expire_task", "schedule": 15 * 60.0}

# --- aggregates that leave the partnership (docs/disclosure.md) ---
# Counts below DISCLOSURE_MIN_COUNT are suppressed, the rest rounded to DISCLOSURE_ROUND_TO;
# partners get a period DISCLOSURE_SETTLE_DAYS after it ends, and only the boundary sets
# named in DISCLOSURE_PARTNER_BOUNDARY_SETS (slugs; empty: every set).
DISCLOSURE_MIN_COUNT = env_int("DISCLOSURE_MIN_COUNT", 10)
DISCLOSURE_ROUND_TO = env_int("DISCLOSURE_ROUND_TO", 5)
DISCLOSURE_SETTLE_DAYS = env_int("DISCLOSURE_SETTLE_DAYS", 7)
DISCLOSURE_PARTNER_BOUNDARY_SETS = env_list("DISCLOSURE_PARTNER_BOUNDARY_SETS", [])
# Every partner output is computed from records moved to map points (centres of a grid of
# spacing √2·DISCLOSURE_LOCATION_RADIUS_M on EPSG:27700): no location is shown more precisely
# than this radius, in metres.
DISCLOSURE_LOCATION_RADIUS_M = float(os.environ.get("DISCLOSURE_LOCATION_RADIUS_M", "200"))
if not 1 <= DISCLOSURE_LOCATION_RADIUS_M <= 100_000:  # nan fails too: refuse to start, not to answer
    raise ImproperlyConfigured("DISCLOSURE_LOCATION_RADIUS_M is a number of metres from 1 to 100000")
# Hotspots: quartic kernel bandwidth and grid cell (metres, EPSG:27700); a cell is published
# only with at least HOTSPOT_MIN_RECORDS records within one bandwidth of its centre.
HOTSPOT_BANDWIDTH_M = float(os.environ.get("HOTSPOT_BANDWIDTH_M", "250"))
HOTSPOT_CELL_M = float(os.environ.get("HOTSPOT_CELL_M", "50"))
HOTSPOT_MIN_RECORDS = env_int("HOTSPOT_MIN_RECORDS", 10)
# A cell of 0 m would divide by zero in every map request, a tiny one would make a map of
# billions of cells: refused at start, not at the first partner's request.
if not (1 <= HOTSPOT_CELL_M <= HOTSPOT_BANDWIDTH_M <= 10_000 and HOTSPOT_MIN_RECORDS >= 1):
    raise ImproperlyConfigured("HOTSPOT_CELL_M must be at least 1 and at most HOTSPOT_BANDWIDTH_M (at most 10000), "
                               "HOTSPOT_MIN_RECORDS at least 1")

# --- the warden handheld app (/warden/) ---
# Idle minutes before the app locks and asks for the PIN again; days without a successful
# sync after which it keeps records closed until the user signs in online again.
HANDHELD_IDLE_LOCK_MINUTES = float(os.environ.get("HANDHELD_IDLE_LOCK_MINUTES", "5"))
HANDHELD_MAX_DAYS_WITHOUT_SYNC = float(os.environ.get("HANDHELD_MAX_DAYS_WITHOUT_SYNC", "7"))
# Zoom levels of the base map the handheld keeps for its user's areas ("12-17" or "14"), and
# the most tiles it may keep: past it, the highest zooms are left out and the app says so.
HANDHELD_TILE_ZOOMS = os.environ.get("HANDHELD_TILE_ZOOMS", "12-17")
HANDHELD_TILE_MAX = env_int("HANDHELD_TILE_MAX", 3000)
_zooms = HANDHELD_TILE_ZOOMS.split("-")
if not (1 <= len(_zooms) <= 2 and all(z.isdigit() and int(z) <= 22 for z in _zooms)
        and int(_zooms[0]) <= int(_zooms[-1]) and 0 <= HANDHELD_TILE_MAX <= 100_000):
    raise ImproperlyConfigured("HANDHELD_TILE_ZOOMS is a zoom or a range like 12-17 (at most 22), "
                               "HANDHELD_TILE_MAX a count from 0 to 100000")

# --- accountability: access log chain, data subjects' rights, retention, escalation ---
# (docs/accountability.md, docs/escalation.md; code in warden_app/accountability/)
CELERY_IMPORTS = ["warden_app.accountability.tasks"]
# DUAA 2025 s.82 dropped the duty to log a justification; fieldsync records a purpose
# anyway, and this decides whether the DPO's acts and escalations must state one.
ACCESS_LOG_PURPOSE_REQUIRED = env_bool("ACCESS_LOG_PURPOSE_REQUIRED", True)
ACCESS_LOG_PAGE_DEFAULT = env_int("ACCESS_LOG_PAGE_DEFAULT", 100)
ACCESS_LOG_PAGE_MAX = env_int("ACCESS_LOG_PAGE_MAX", 1000)
# Rows sealed per transaction by the sealing step (it loops until none are left).
ACCESS_LOG_SEAL_BATCH = env_int("ACCESS_LOG_SEAL_BATCH", 5000)
# Where each seal's chain head is written outside the database (accountability/anchors.py):
# file:///path (an append-only file) or s3://bucket/prefix (one object per seal). Empty:
# no anchor, and a database superuser could cut or rewrite the chain unseen.
ACCESS_LOG_ANCHOR = os.environ.get("ACCESS_LOG_ANCHOR", "")
if ACCESS_LOG_ANCHOR and not ACCESS_LOG_ANCHOR.startswith(("file:///", "s3://")):
    raise ImproperlyConfigured("ACCESS_LOG_ANCHOR must be file:///absolute/path or s3://bucket/prefix")
# The anchor bucket's endpoint as the photos' (AWS_S3_*), credentials from boto3's chain.
ACCESS_LOG_ANCHOR_S3_OPTIONS = {
    "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
    "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
    "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
}
# Days personal fields are kept, per record type, unless an admin set a RetentionPeriod.
# Override as RETENTION_PERSONAL_DAYS="observation=365,audit_item=730".
RETENTION_PERSONAL_DAYS = {"observation": 365} | {
    name: int(days)
    for name, days in (item.split("=", 1) for item in env_list("RETENTION_PERSONAL_DAYS", []))
}
RETENTION_BATCH = env_int("RETENTION_BATCH", 200)
# Copies made of an already-erased record (a late push's conflict or receipt) are swept
# when made within this many days before a retention run.
RETENTION_SWEEP_DAYS = env_int("RETENTION_SWEEP_DAYS", 3)
# Escalation delivery: attempts in all, exponential backoff between them, HTTP timeout.
ESCALATION_MAX_ATTEMPTS = env_int("ESCALATION_MAX_ATTEMPTS", 8)
ESCALATION_BACKOFF_BASE_S = env_int("ESCALATION_BACKOFF_BASE_S", 30)
ESCALATION_BACKOFF_MAX_S = env_int("ESCALATION_BACKOFF_MAX_S", 3600)
ESCALATION_TIMEOUT_S = float(os.environ.get("ESCALATION_TIMEOUT_S", "10"))
# Personal data leaves only over TLS; plain http is for a partner's test rig on loopback.
ESCALATION_ALLOW_HTTP = env_bool("ESCALATION_ALLOW_HTTP", False)
# Where partners' staff follow the link back to the record (the review desk).
FIELDSYNC_BASE_URL = os.environ.get("FIELDSYNC_BASE_URL", "")
CELERY_BEAT_SCHEDULE |= {
    "access-log-seal": {"task": "warden_app.accountability.tasks.access_log_seal_task", "schedule": 60.0},
    # The full chain check, its result kept for the DPO's pages (accountability/verification.py).
    "access-log-verify": {"task": "warden_app.accountability.tasks.access_log_verify_task", "schedule": 24 * 3600.0},
    "retention-erase-due": {"task": "warden_app.accountability.tasks.retention_erase_due", "schedule": 24 * 3600.0},
    "escalations-catch-up": {"task": "warden_app.accountability.tasks.escalations_catch_up", "schedule": 10 * 60.0},
}
