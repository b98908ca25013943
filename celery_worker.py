"""Celery entry point: `celery -A celery_worker worker` and `celery -A celery_worker beat`.

Builds the Flask app (so every task runs inside its app context) and exposes its Celery app.
"""

from portal import create_app

app = create_app()
celery = app.extensions["celery"]
