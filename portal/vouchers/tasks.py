"""Celery tasks of the voucher area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.vouchers import notice, redemptions, wallet


@shared_task(name="vouchers.expire_vouchers")
def expire_vouchers() -> int:
    """Expire vouchers past their validity and release their unused balance; safe to run twice."""
    return wallet.expire_vouchers()


@shared_task(name="vouchers.end_public_notice")
def end_public_notice() -> int:
    """Make approved claims payable once their public notice has ended; safe to run twice."""
    return notice.end_public_notice()


@shared_task(name="vouchers.expire_redemptions")
def expire_redemptions() -> int:
    """Release the reservations at payment not submitted in time; safe to run twice."""
    return redemptions.expire_redemptions()
