"""Configuration: an embedded SQLite default, a testing profile and production from the environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import ClassVar

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"


def database_url(raw: str | None, default: str) -> str:
    """Normalise a DATABASE_URL so that PostgreSQL always goes through psycopg 3."""
    url = raw or default
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Settings shared by every profile; each can be overridden from the environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key")
    SQLALCHEMY_DATABASE_URI = database_url(
        os.environ.get("DATABASE_URL"), f"sqlite:///{INSTANCE_DIR / 'portal.db'}"
    )
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {"pool_pre_ping": True}
    REDIS_URL = os.environ.get("REDIS_URL") or None
    # The cache may live in a Redis of its own (one that evicts); by default it shares REDIS_URL.
    CACHE_REDIS_URL = os.environ.get("CACHE_REDIS_URL") or None
    PG_RANDOM_PAGE_COST = float(os.environ.get("PG_RANDOM_PAGE_COST", "1.1"))
    # How many reverse proxies (nginx, a load balancer) stand in front: their X-Forwarded-For is
    # trusted, so rate limits and audit rows see the visitor's address instead of the proxy's.
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))

    # Password hashing: scrypt with N = 2^17 (OWASP's minimum for scrypt).
    PASSWORD_HASH_METHOD = "scrypt:131072:8:1"  # noqa: S105 - a method name, not a password

    # Cookies: never readable by script, not sent on cross-site POSTs; Secure in production (HTTPS).
    # The server refuses a session cookie signed longer ago than PERMANENT_SESSION_LIFETIME; the
    # browser drops "keep me signed in" after REMEMBER_COOKIE_DURATION. Both stop working at sign-out:
    # the signed user id carries the user's session_version, which sign-out bumps.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = False
    REMEMBER_COOKIE_DURATION = 14 * 24 * 3600
    # Strict-Transport-Security max-age in seconds; 0 sends none (development serves plain HTTP).
    HSTS_MAX_AGE = 0
    PERMANENT_SESSION_LIFETIME = 60 * 60 * 12
    WTF_CSRF_TIME_LIMIT = 60 * 60 * 12

    BABEL_DEFAULT_LOCALE = "zh"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    LANGUAGES: ClassVar[dict[str, str]] = {"zh": "中文", "en": "English"}

    BOOTSTRAP_SERVE_LOCAL = True
    BOOTSTRAP_BTN_STYLE = "primary"

    # Flask-Limiter's X-RateLimit-* headers are off: it would set Retry-After on every limited answer, over
    # the one of a sign-in delay. A 429 carries Retry-After (portal.core.web).
    RATELIMIT_HEADERS_ENABLED = False
    # A rate-limit store that is down lets requests through (logged) instead of answering 500.
    RATELIMIT_SWALLOW_ERRORS = True
    # Sign-in, on the form and at POST /api/v1/tokens (docs/accounts.md): attempts per visitor's address,
    # and per username from one address (both answer 429). Failures of one username from every address
    # count against LOGIN_USER_FAILURE_LIMIT: past it the username is slowed, not locked: an address that
    # has failed for it waits LOGIN_SLOW_DELAY_SECONDS after the last such attempt ("try again in N
    # seconds"), and an address that has not failed for it is not slowed, so the owner still gets in.
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
    LOGIN_USER_ADDRESS_RATE_LIMIT = os.environ.get("LOGIN_USER_ADDRESS_RATE_LIMIT", "20 per hour")
    LOGIN_USER_FAILURE_LIMIT = os.environ.get("LOGIN_USER_FAILURE_LIMIT", "20 per hour")
    LOGIN_SLOW_DELAY_SECONDS = int(os.environ.get("LOGIN_SLOW_DELAY_SECONDS", "30"))
    # Registration (POST /register): per visitor's address, for all visitors together (a flood costs
    # one password hash each), and per e-mail address typed (the mail goes there).
    REGISTRATION_CLIENT_RATE_LIMIT = os.environ.get("REGISTRATION_CLIENT_RATE_LIMIT", "20 per hour")
    REGISTRATION_GLOBAL_RATE_LIMIT = os.environ.get("REGISTRATION_GLOBAL_RATE_LIMIT", "300 per hour")
    REGISTRATION_ADDRESS_RATE_LIMIT = os.environ.get("REGISTRATION_ADDRESS_RATE_LIMIT", "5 per hour")
    API_TOKEN_TTL_SECONDS = 60 * 60 * 24

    # Accounts (docs/accounts.md): how long one-time links work, and the limits of the forgotten-
    # password page: per visitor's address and per e-mail address typed (both answer 429), per account
    # (further requests get the same answer but no mail, so the limit reveals no account).
    PASSWORD_RESET_TTL_SECONDS = int(os.environ.get("PASSWORD_RESET_TTL_SECONDS", str(60 * 60)))
    REGISTRATION_LINK_TTL_SECONDS = int(os.environ.get("REGISTRATION_LINK_TTL_SECONDS", str(3 * 24 * 3600)))
    WELCOME_LINK_TTL_SECONDS = int(os.environ.get("WELCOME_LINK_TTL_SECONDS", str(7 * 24 * 3600)))
    EMAIL_CHANGE_TTL_SECONDS = int(os.environ.get("EMAIL_CHANGE_TTL_SECONDS", str(24 * 3600)))
    INVITATION_TTL_SECONDS = int(os.environ.get("INVITATION_TTL_SECONDS", str(7 * 24 * 3600)))
    PASSWORD_RESET_CLIENT_RATE_LIMIT = os.environ.get("PASSWORD_RESET_CLIENT_RATE_LIMIT", "20 per hour")
    PASSWORD_RESET_ADDRESS_RATE_LIMIT = os.environ.get("PASSWORD_RESET_ADDRESS_RATE_LIMIT", "5 per hour")
    PASSWORD_RESET_ACCOUNT_RATE_LIMIT = os.environ.get("PASSWORD_RESET_ACCOUNT_RATE_LIMIT", "3 per hour")
    # Invitations an enterprise's account holder may send.
    INVITATION_RATE_LIMIT = os.environ.get("INVITATION_RATE_LIMIT", "30 per day")

    CACHE_DEFAULT_TIMEOUT = 300
    # When the database cannot be reached, pages and the API answer 503 with this Retry-After.
    RETRY_AFTER_SECONDS = int(os.environ.get("RETRY_AFTER_SECONDS", "30"))
    # The cache and the rate-limit store fail open: Redis is given this many seconds to answer, and
    # after a connection error the cache leaves it alone for CACHE_PAUSE_SECONDS (pages are computed).
    CACHE_SOCKET_TIMEOUT = float(os.environ.get("CACHE_SOCKET_TIMEOUT", "0.5"))
    CACHE_PAUSE_SECONDS = float(os.environ.get("CACHE_PAUSE_SECONDS", "5"))
    # Exports with more rows than this are written by a worker, with a progress page.
    EXPORT_ASYNC_ROWS = int(os.environ.get("EXPORT_ASYNC_ROWS", "5000"))
    CATALOG_PAGE_SIZE = 20
    # Visitors' rendered search pages; keyed by the catalogue version, so this only bounds memory.
    CATALOG_PAGE_CACHE_SECONDS = int(os.environ.get("CATALOG_PAGE_CACHE_SECONDS", "300"))
    # Each web process also keeps the visitors' answers it served last in memory, up to this many
    # bytes, so that a popular search costs no round trip to the cache (portal.catalog.fastpath).
    CATALOG_FAST_MEMORY_BYTES = int(os.environ.get("CATALOG_FAST_MEMORY_BYTES", str(16 * 1024 * 1024)))

    UPLOAD_FOLDER = os.environ.get("UPLOAD_FOLDER") or str(INSTANCE_DIR / "uploads")
    # Static files under hashed names, with compressed copies, written when the app starts
    # (portal.core.assets); the folder must be writable by the web processes.
    STATIC_BUILD_FOLDER = os.environ.get("STATIC_BUILD_FOLDER") or str(INSTANCE_DIR / "static")
    MAX_CONTENT_LENGTH = 20 * 1024 * 1024
    UPLOAD_MAX_BYTES = 10 * 1024 * 1024
    # Instrument photos: the upload's size, its pixels (checked before decoding), how long caches keep
    # a photo (a name is never reused, so only a deleted photo can linger that long).
    PHOTO_MAX_BYTES = int(os.environ.get("PHOTO_MAX_BYTES", str(10 * 1024 * 1024)))
    PHOTO_MAX_PIXELS = int(os.environ.get("PHOTO_MAX_PIXELS", "40000000"))
    PHOTO_CACHE_SECONDS = int(os.environ.get("PHOTO_CACHE_SECONDS", "86400"))

    # Catalogue files uploaded in the admin console or the API. An upload may have IMPORT_MAX_BYTES (kept
    # below MAX_CONTENT_LENGTH so the form can say so); an XLSX workbook may unpack to at most
    # IMPORT_MAX_UNPACKED_BYTES in IMPORT_MAX_ZIP_MEMBERS parts (a zip bomb is refused unopened); a file
    # may have IMPORT_MAX_ROWS rows. Files with more rows than IMPORT_ASYNC_ROWS or more bytes than
    # IMPORT_ASYNC_BYTES are checked and applied by a worker, with a progress page. A dry run lists at
    # most IMPORT_MAX_ERRORS problems (and says how many there are).
    IMPORT_MAX_BYTES = int(os.environ.get("IMPORT_MAX_BYTES", str(16 * 1024 * 1024)))
    IMPORT_MAX_UNPACKED_BYTES = int(os.environ.get("IMPORT_MAX_UNPACKED_BYTES", str(128 * 1024 * 1024)))
    IMPORT_MAX_ZIP_MEMBERS = int(os.environ.get("IMPORT_MAX_ZIP_MEMBERS", "1000"))
    IMPORT_MAX_ROWS = int(os.environ.get("IMPORT_MAX_ROWS", "200000"))
    IMPORT_ASYNC_ROWS = int(os.environ.get("IMPORT_ASYNC_ROWS", "2000"))
    IMPORT_ASYNC_BYTES = int(os.environ.get("IMPORT_ASYNC_BYTES", str(256 * 1024)))
    IMPORT_MAX_ERRORS = int(os.environ.get("IMPORT_MAX_ERRORS", "1000"))

    # Booking requests nobody answers expire after this long (or when their slot begins).
    BOOKING_REQUEST_TTL_HOURS = 72
    # The no-show task looks at confirmed slots begun this long ago at most: older ones without a
    # check-in predate check-in (or a stopped task) and are left to their provider.
    NO_SHOW_LOOKBACK_HOURS = 24
    # How long a waitlist offer holds freed time for the first in line (never past the time's start).
    WAITLIST_OFFER_HOURS = float(os.environ.get("WAITLIST_OFFER_HOURS", "2"))
    # How many days an approved provider admission stays in public notice before it takes effect.
    ADMISSION_NOTICE_DAYS = int(os.environ.get("ADMISSION_NOTICE_DAYS", "7"))

    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USE_TLS = _bool("MAIL_USE_TLS")
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "portal@kjj.liaocheng.gov.cn")
    MAIL_FILE_FOLDER = str(INSTANCE_DIR / "mail")
    MAIL_TIMEOUT = int(os.environ.get("MAIL_TIMEOUT", "30"))
    # National reporting and the yearly evaluation (issue 19; portal.reporting). Instruments worth at
    # least REPORTING_MIN_VALUE_FEN (500,000 yuan) are reported and evaluated. The yearly norms of
    # effective hours, the latest published national averages per instrument, and the weights of the
    # national score sheet (operation, sharing results, management) change by ministry notice.
    REPORTING_MIN_VALUE_FEN = int(os.environ.get("REPORTING_MIN_VALUE_FEN", "50000000"))
    REPORTING_NORM_HOURS_GENERAL = int(os.environ.get("REPORTING_NORM_HOURS_GENERAL", "1400"))
    REPORTING_NORM_HOURS_SPECIALISED = int(os.environ.get("REPORTING_NORM_HOURS_SPECIALISED", "800"))
    REPORTING_NATIONAL_EFFECTIVE_HOURS = int(os.environ.get("REPORTING_NATIONAL_EFFECTIVE_HOURS", "1599"))
    REPORTING_NATIONAL_EXTERNAL_HOURS = int(os.environ.get("REPORTING_NATIONAL_EXTERNAL_HOURS", "273"))
    REPORTING_SCORE_WEIGHTS = os.environ.get("REPORTING_SCORE_WEIGHTS", "40,20,40")
    # A planned purchase is flagged when the city already has an instrument of its category that ran
    # fewer effective hours than this in the last full year (查重评议).
    PURCHASE_CHECK_MIN_HOURS = int(os.environ.get("PURCHASE_CHECK_MIN_HOURS", "1200"))
    # Links in e-mails point here.
    PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:5000")
    # `flask demo serve` runs the beat schedule in-process, every task at least this often (seconds).
    DEMO_TASK_MAX_INTERVAL_SECONDS = int(os.environ.get("DEMO_TASK_MAX_INTERVAL_SECONDS", "60"))

    # Delivery: a claimed notification is held this long; failures retry with doubling backoff until
    # the attempts are used up; the sweep re-queues pending mail older than its grace.
    NOTIFY_LOCK_SECONDS = int(os.environ.get("NOTIFY_LOCK_SECONDS", "120"))
    NOTIFY_MAX_ATTEMPTS = int(os.environ.get("NOTIFY_MAX_ATTEMPTS", "5"))
    NOTIFY_RETRY_BACKOFF_SECONDS = int(os.environ.get("NOTIFY_RETRY_BACKOFF_SECONDS", "30"))
    NOTIFY_SWEEP_GRACE_SECONDS = int(os.environ.get("NOTIFY_SWEEP_GRACE_SECONDS", "60"))
    # Notifications per delivery task: claimed together, sent one after the other over the worker
    # process's one SMTP connection, each marked sent as soon as the server accepted it.
    NOTIFY_BATCH_SIZE = int(os.environ.get("NOTIFY_BATCH_SIZE", "20"))
    # How long Redis keeps an unacknowledged task before handing it to another worker.
    CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
    # A web process gives up publishing to a broker that does not answer after this many seconds
    # (the outbox sweep sends later); celery_worker.py sets None, so workers wait for Redis instead.
    CELERY_BROKER_SOCKET_TIMEOUT: float | None = 3

    # Counties of the network; a province deployment replaces the list.
    COUNTIES = (
        "东昌府区",
        "茌平区",
        "临清市",
        "阳谷县",
        "莘县",
        "东阿县",
        "冠县",
        "高唐县",
        "高新区",
        "经开区",
        "度假区",
    )

    API_TITLE = "Liaocheng Instrument & Voucher Portal API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"

    DEMO_DATA = False


class DevelopmentConfig(Config):
    """The embedded default: SQLite in instance/, tasks run eagerly, mail written to files."""

    DEMO_DATA = True


class TestingConfig(Config):
    """Fast, isolated settings for the test suite; the database URL is given by the fixture."""

    TESTING = True
    SECRET_KEY = "testing-secret"  # noqa: S105 - test-only constant
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    REDIS_URL = None
    # Cheap hashes keep the suite fast; test_passwords checks the production method separately.
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"  # noqa: S105 - a method name, not a password
    WTF_CSRF_ENABLED = True
    RATELIMIT_ENABLED = True
    MAIL_SERVER = None
    # Mail the tests do not read goes to a scratch folder, never into the demo's instance/mail.
    MAIL_FILE_FOLDER = os.path.join(tempfile.gettempdir(), "portal-test-mail")
    # The test processes share one build of the static files (each file is written whole, once).
    STATIC_BUILD_FOLDER = os.path.join(tempfile.gettempdir(), "portal-test-static")
    DEMO_DATA = True


class ProductionConfig(Config):
    """PostgreSQL, Redis, real mail; everything secret comes from the environment."""

    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    HSTS_MAX_AGE = int(os.environ.get("HSTS_MAX_AGE", str(365 * 24 * 3600)))
    PREFERRED_URL_SCHEME = "https"

    @classmethod
    def check(cls) -> None:
        """Refuse to start production with the development secret or the embedded database."""
        missing = [name for name in ("SECRET_KEY", "DATABASE_URL") if not os.environ.get(name)]
        if missing:
            raise RuntimeError(f"production needs these environment variables: {', '.join(missing)}")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
