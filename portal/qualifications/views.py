"""Qualification pages: the provider's grants, price table and training sessions; the user's enrolment."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("qualifications", __name__)
