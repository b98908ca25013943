"""An instrument's price table: one row per customer category and operation mode (DESIGN §11)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Integer, UniqueConstraint, event, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal.catalog.models import CatalogState, Instrument, forget_catalog_version
from portal.core.audit import ACTION_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class CustomerCategory(StrEnum):
    INTERNAL = "internal"  # the owning institution's own people
    ACADEMIC = "academic"  # other universities and institutes
    ENTERPRISE = "enterprise"
    SME = "sme"  # a verified 科技型中小企业


CUSTOMER_LABELS = {
    CustomerCategory.INTERNAL: _l("Own institution"),
    CustomerCategory.ACADEMIC: _l("Universities and institutes"),
    CustomerCategory.ENTERPRISE: _l("Enterprises"),
    CustomerCategory.SME: _l("Tech SMEs"),
}


class PriceMode(StrEnum):
    SELF = "self"  # 自主上机: the user runs the instrument
    STAFF = "staff"  # 代为操作: the provider's operator runs it
    SAMPLE = "sample"  # 委托测试: samples sent in


PRICE_MODE_LABELS = {
    PriceMode.SELF: _l("Self-operated"),
    PriceMode.STAFF: _l("Staff-operated"),
    PriceMode.SAMPLE: _l("Per sample"),
}


class PriceUnit(StrEnum):
    HOUR = "hour"
    SAMPLE = "sample"


UNIT_LABELS = {PriceUnit.HOUR: _l("hour"), PriceUnit.SAMPLE: _l("sample")}


class PriceRow(Model):
    """One price of an instrument: for a customer category and mode, per hour or per sample."""

    __tablename__ = "instrument_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"), index=True)
    customer: Mapped[CustomerCategory] = mapped_column(str_enum(CustomerCategory))
    mode: Mapped[PriceMode] = mapped_column(str_enum(PriceMode))
    unit: Mapped[PriceUnit] = mapped_column(str_enum(PriceUnit))
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    # Usage below this many units is billed as this many (0: no minimum).
    min_units: Mapped[int] = mapped_column(Integer, default=0)
    # Quantity steps, [{"from_units": 10, "unit_price_fen": 8000}, ...]: units from `from_units` on
    # cost the step's price (graduated, so one more unit never makes the whole cheaper).
    steps: Mapped[list[dict]] = mapped_column(JSON, default=list)
    # Hours beyond the booked time, when set; else they cost the ordinary price.
    overtime_unit_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, onupdate=current_time)

    instrument: Mapped[Instrument] = relationship()

    __table_args__ = (
        UniqueConstraint("instrument_id", "customer", "mode", name="uq_instrument_prices_row"),
        CheckConstraint("unit_price_fen >= 0 AND min_units >= 0", name="price_not_negative"),
        CheckConstraint(
            "overtime_unit_price_fen IS NULL OR overtime_unit_price_fen >= 0", name="overtime_not_negative"
        ),
        CheckConstraint("mode != 'sample' OR unit = 'sample'", name="samples_per_sample"),
    )

    def __repr__(self) -> str:
        return (
            f"<PriceRow {self.instrument_id} {self.customer}/{self.mode} {self.unit_price_fen}/{self.unit}>"
        )


# What else the instrument's page and record show, so its change is a catalogue change: the price
# table, and what the areas above add (portal.qualifications adds its use rules and training).
SHOWN_WITH_INSTRUMENT: list[type] = [PriceRow]


@event.listens_for(Session, "after_flush")
def _bump_version_on_price_change(session: Session, flush_context) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, tuple(SHOWN_WITH_INSTRUMENT)) for obj in changed):
        session.connection().execute(
            update(CatalogState).where(CatalogState.id == 1).values(version=uuid.uuid4().hex)
        )
        forget_catalog_version()


ACTION_LABELS.update({"instrument.prices_changed": _l("Price table changed")})
