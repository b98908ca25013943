"""The public notice (公示): approved claims are published for a while before they become payable."""

from __future__ import annotations

from datetime import date

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from portal.core import clock
from portal.core.database import serialized_write
from portal.core.locks import Rank, lock_one
from portal.extensions import db
from portal.vouchers.claims import CLAIM_TRANSITIONS, audit_claim, tell_about_claim
from portal.vouchers.models import Claim, ClaimItem
from portal.vouchers.services import states_allowing, transition

IN_NOTICE_STATES = states_allowing(CLAIM_TRANSITIONS, "end_notice")


def end_public_notice(today: date | None = None) -> int:
    """Approved claims whose public notice has ended become payable; returns how many."""
    today = today or clock.local_today()
    due = db.session.scalars(
        select(Claim.id).where(Claim.state.in_(IN_NOTICE_STATES), Claim.notice_ends_on <= today)
    ).all()
    for claim_id in due:
        end_notice(claim_id)
    return len(due)


def end_notice(claim_id: int) -> bool:
    """IN_NOTICE -> PAYABLE (the daily task, no one's decision): whether it became payable now."""
    with serialized_write():
        claim = lock_one(Rank.CLAIMS, Claim, claim_id)
        if (claim.state, "end_notice") not in CLAIM_TRANSITIONS:
            return False  # done by an earlier run
        before = transition(
            claim,
            CLAIM_TRANSITIONS,
            "end_notice",
            _("This claim is not in its public notice."),
            payable_at=clock.utcnow(),
        )
        audit_claim(claim, before, None, "public notice ended")
        tell_about_claim(claim, "payable")
        db.session.commit()
    return True


def claims_in_notice() -> list[Claim]:
    """The public notice board (公示): approved claims whose notice period runs now."""
    return list(
        db.session.scalars(
            select(Claim)
            .where(Claim.state.in_(IN_NOTICE_STATES))
            .options(
                joinedload(Claim.enterprise), selectinload(Claim.items).joinedload(ClaimItem.service_record)
            )
            .order_by(Claim.notice_ends_on, Claim.id)
        )
    )
