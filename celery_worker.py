"""Celery entry point: `celery -A celery_worker worker` and `celery -A celery_worker beat`.

Builds the Flask app (so every task runs inside its app context) and exposes its Celery app. The Flask
app must not be called `app`: `celery -A celery_worker` takes a module attribute of that name first.
Workers wait for a broker that does not answer rather than time out (see portal._derive_settings).
"""

from portal import create_app

flask_app = create_app(overrides={"CELERY_BROKER_SOCKET_TIMEOUT": None})
celery = flask_app.extensions["celery"]
