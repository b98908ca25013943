"""Celery tasks of the voucher area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.vouchers import services


@shared_task(name="vouchers.expire_vouchers")
def expire_vouchers() -> int:
    """Expire vouchers past their validity and release their unused balance; safe to run twice."""
    return services.expire_vouchers()


@shared_task(name="vouchers.end_public_notice")
def end_public_notice() -> int:
    """Make approved claims payable once their public notice has ended; safe to run twice."""
    return services.end_public_notice()
