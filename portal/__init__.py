"""Liaocheng Instrument & Voucher Portal: the application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab
from flask import Flask, has_app_context
from werkzeug.middleware.proxy_fix import ProxyFix

from config import CONFIGS, Config, ProductionConfig
from portal.extensions import babel, bootstrap, cache, csrf, db, limiter, login_manager, migrate

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")

# Every periodic task, run by the one `celery beat` process.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "expire-unanswered-booking-requests": {"task": "booking.expire_requests", "schedule": 300.0},
    "expire-vouchers": {"task": "vouchers.expire_vouchers", "schedule": 3600.0},
    "end-public-notice": {"task": "vouchers.end_public_notice", "schedule": 3600.0},
    "expire-redemptions": {"task": "vouchers.expire_redemptions", "schedule": 3600.0},
    # Providers whose admission's public notice has ended are admitted shortly after midnight.
    "end-admission-notice": {"task": "admission.end_public_notice", "schedule": crontab(hour=0, minute=15)},
    "notification-sweep": {"task": "notifications.sweep", "schedule": 60.0},
    "send-queued-tasks": {"task": "core.send_queued_tasks", "schedule": 60.0},
    "booking-reminders": {"task": "booking.send_reminders", "schedule": 900.0},
    "booking-no-shows": {"task": "booking.mark_no_shows", "schedule": 300.0},
    "waitlist-lapse-offers": {"task": "waitlist.lapse_offers", "schedule": 60.0},
    "qualification-expiry-reminders": {"task": "qualifications.remind_expiring", "schedule": 3600.0},
    # Sessions nobody checked out end at their booking's end (DESIGN §11).
    "close-usage-sessions": {"task": "usage.close_sessions", "schedule": 300.0},
    "nightly-tallies": {"task": "finance.tally_recent", "schedule": crontab(hour=1, minute=30)},
    "nightly-usage-tallies": {"task": "usage.tally_recent", "schedule": crontab(hour=1, minute=45)},
}


def create_app(config: str | type[Config] | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the application: `config` is a profile name or class (default: PORTAL_CONFIG or development)."""
    app = Flask(__name__, instance_path=str(Path(__file__).resolve().parent.parent / "instance"))
    _configure(app, config, overrides)
    _init_extensions(app)

    # The areas are imported here, not at the top: this module runs first whenever any portal module
    # is imported (portal.extensions, a model in a script), and must not drag every area in with it.
    from portal.core import assets, database, tasks, web  # noqa: F401 - engine events, the core's tasks

    babel.init_app(app, locale_selector=web.select_locale, timezone_selector=lambda: "Asia/Shanghai")
    web.init_app(app)
    assets.init_app(app)  # after the blueprints with static files (Bootstrap's) are registered

    from portal import (
        accounts,
        admin,
        admission,
        api,
        booking,
        catalog,
        credit,
        dashboard,
        finance,
        notifications,
        operations,
        qualifications,
        reporting,
        usage,
        vouchers,
        waitlist,
    )

    accounts.init_app(app)
    catalog.init_app(app)
    qualifications.init_app(app)
    booking.init_app(app)
    usage.init_app(app)
    admission.init_app(app)
    vouchers.init_app(app)
    waitlist.init_app(app)
    notifications.init_app(app)
    finance.init_app(app)
    credit.init_app(app)
    dashboard.init_app(app)
    reporting.init_app(app)
    admin.init_app(app)
    api.init_app(app)
    operations.init_app(app)

    from portal.demo.cli import demo_cli

    app.cli.add_command(demo_cli)
    celery_init_app(app)
    return app


def _configure(app: Flask, config: str | type[Config] | None, overrides: dict[str, Any] | None) -> None:
    """The profile's settings, the overrides and what follows from them; the proxies; the instance folder."""
    if config is None or isinstance(config, str):
        config = CONFIGS[config or os.environ.get("PORTAL_CONFIG", "development")]
    if config is ProductionConfig:
        ProductionConfig.check()
    app.config.from_object(config)
    app.config.update(overrides or {})
    _derive_settings(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        # Werkzeug's documented way to wrap the WSGI application (mypy sees a method being replaced).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)


def _init_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    csrf.init_app(app)
    cache.init_app(app)
    limiter.init_app(app)
    bootstrap.init_app(app)
    login_manager.init_app(app)


def _derive_settings(app: Flask) -> None:
    """Settings that follow from others: the sqlite pragmas, the rate-limit store, the cache, Celery."""
    redis_url = app.config.get("REDIS_URL")
    _derive_limiter_and_cache(app, redis_url)
    _derive_engine_options(app)
    app.config.setdefault("CELERY", _celery_settings(app, redis_url))


def _derive_limiter_and_cache(app: Flask, redis_url: str | None) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url or "memory://")
    # A rate-limit store that cannot answer is replaced by an in-process one with the same limits
    # (never by no limit) until it answers again; it is asked with short timeouts.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    timeout = app.config["CACHE_SOCKET_TIMEOUT"]
    app.config.setdefault(
        "RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    )
    if "CACHE_TYPE" not in app.config:
        cache_url = app.config.get("CACHE_REDIS_URL") or redis_url
        if cache_url:
            app.config.update(
                CACHE_TYPE="portal.core.cache.FailSafeRedisCache",
                CACHE_REDIS_URL=cache_url,
                CACHE_KEY_PREFIX="portal:",
            )
        else:
            app.config["CACHE_TYPE"] = "SimpleCache"


def _derive_engine_options(app: Flask) -> None:
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 30})
    elif app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # PostgreSQL's default page costs assume spinning disks and make the planner scan the whole
        # instruments table instead of using the keyword index; 1.1 is the usual value for SSDs.
        options.setdefault(
            "connect_args", {"options": f"-c random_page_cost={app.config['PG_RANDOM_PAGE_COST']}"}
        )
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _celery_settings(app: Flask, redis_url: str | None) -> dict[str, Any]:
    return {
        "broker_url": redis_url or "memory://",
        "task_always_eager": not redis_url,
        "task_eager_propagates": True,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # kombu's Redis transport, repaired so a worker survives losing Redis while it holds tasks
        # (portal/core/broker.py).
        "broker_transport": "portal.core.broker:Transport" if redis_url else None,
        "timezone": "Asia/Shanghai",
        "beat_schedule": BEAT_SCHEDULE,
        # An approval must not wait for a broker that is down: the outbox sweep sends later. A
        # publish makes one connection attempt (kombu would otherwise retry it for ~6 s, even with
        # apply_async(retry=False)), and a broker that accepts connections but does not answer
        # (hung, cut off) is given up after the socket timeout instead of blocking for ever. The
        # workers wait instead (celery_worker.py sets no socket timeout): a consumer whose
        # acknowledgement times out can stop consuming for good (kombu 5.7).
        "broker_transport_options": {
            "visibility_timeout": app.config["CELERY_VISIBILITY_TIMEOUT"],
            "max_retries": 0,
            "socket_connect_timeout": 3,
            "socket_timeout": app.config["CELERY_BROKER_SOCKET_TIMEOUT"],
        },
        "broker_connection_timeout": 3,
    }


def celery_init_app(app: Flask) -> Celery[Any]:
    """Celery as Flask's documentation wires it: every task runs inside this app's context."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            # An eager task reuses the caller's context, so it sees the caller's session and data.
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
