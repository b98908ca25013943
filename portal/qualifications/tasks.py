"""Thin Celery wrappers around the qualification services."""

from __future__ import annotations
