"""Every page type of the portal, with the demo roles that see it: one list for the page walkers
(accessibility now; phone width and untranslated strings can walk the same list).

A page is reached either by its fixed path or, for pages about one object (a booking, a claim …),
by opening a list page and following its first link whose path matches a pattern: the walkers need
no knowledge of the demo's ids, and a page type whose list is empty is reported, not skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from urllib.parse import urlsplit

from portal.core import clock
from portal.demo import DEMO_PASSWORD

ANONYMOUS = "anonymous"
# The demo's sign-ins (portal/demo/cli.py) standing for each role.
ENTERPRISE = "enterprise"
UNVERIFIED = "newco"
PROVIDER = "provider"
REVIEWER = "reviewer"
FINANCE = "finance"
ADMIN = "admin"
ROLES = (ANONYMOUS, ENTERPRISE, UNVERIFIED, PROVIDER, REVIEWER, FINANCE, ADMIN)
LANGUAGES = ("zh", "en")

EVERYONE = ROLES
SIGNED_IN = tuple(role for role in ROLES if role != ANONYMOUS)
BUREAU = (REVIEWER, FINANCE, ADMIN)


@dataclass(frozen=True)
class PageType:
    """One kind of page. `path` is opened directly; with `follow`, the first link on `path` whose
    path (and query) matches the pattern is opened instead. `status` is the HTTP answer expected."""

    name: str
    path: str
    roles: tuple[str, ...]
    follow: str | None = None
    status: int = 200
    then: str | None = None  # a second link to follow, on the page `follow` led to

    def key(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


INSTRUMENT = r"^/instruments/(?!.*/)[A-Za-z0-9-]+$"

PAGES: tuple[PageType, ...] = (
    # public pages
    PageType("catalogue list", "/instruments/", EVERYONE),
    PageType("catalogue search", "/instruments/?q=%E6%98%BE%E5%BE%AE%E9%95%9C", (ANONYMOUS, ENTERPRISE)),
    PageType("catalogue detail", "/instruments/", EVERYONE, follow=INSTRUMENT),
    PageType("bookable instrument", "/instruments/{instrument}", EVERYONE),
    PageType("week view", "/instruments/{instrument}/availability", EVERYONE),
    PageType("network in numbers", "/network/", EVERYONE),
    PageType("public notice", "/vouchers/notices", EVERYONE),
    PageType("sign in", "/login", (ANONYMOUS,)),
    PageType("register", "/register", (ANONYMOUS,)),
    PageType("forgot password", "/password/forgot", (ANONYMOUS,)),
    PageType("not found", "/instruments/NO-SUCH-INSTRUMENT", EVERYONE, status=404),
    PageType("forbidden", "/admin/", (ENTERPRISE, PROVIDER, REVIEWER, FINANCE), status=403),
    # every signed-in user
    PageType("account", "/account", SIGNED_IN),
    PageType("profile", "/account/profile", SIGNED_IN),
    PageType("password change", "/account/password", SIGNED_IN),
    PageType("calendar feed", "/account/calendar", SIGNED_IN),
    PageType("notifications", "/notifications/", SIGNED_IN),
    PageType("bookings", "/bookings/", (ENTERPRISE, PROVIDER, REVIEWER, FINANCE, ADMIN)),
    # enterprises
    PageType("booking detail", "/bookings/", (ENTERPRISE, PROVIDER, REVIEWER), follow=r"^/bookings/\d+$"),
    PageType(
        "service record", "/bookings/?state=completed", (ENTERPRISE, PROVIDER), follow=r"^/bookings/\d+$"
    ),
    PageType("book a slot", "/instruments/{instrument}/availability", (ENTERPRISE,), follow=r"/book\?start="),
    PageType("book a sample", "/instruments/{instrument}/book-sample", (ENTERPRISE,)),
    # recurring bookings (issue 18): the series form, reached from a slot's booking form, and the
    # demo's weekly series as its enterprise and its instrument's provider see it
    PageType(
        "book a series",
        "/instruments/{instrument}/availability",
        (ENTERPRISE,),
        follow=r"/book\?start=",
        then=r"/book-series\?",
    ),
    PageType("booking series", "/bookings/series/{series}", (ENTERPRISE, PROVIDER)),
    PageType("voucher desk", "/vouchers/", (ENTERPRISE, UNVERIFIED)),
    PageType("enterprise verification", "/vouchers/verification", (UNVERIFIED,)),
    PageType("voucher", "/vouchers/", (ENTERPRISE,), follow=r"^/vouchers/voucher/\d+$"),
    PageType("new claim", "/vouchers/claims/new", (ENTERPRISE,)),
    PageType("bank account", "/vouchers/bank-account", (ENTERPRISE,)),
    PageType("colleagues", "/account/colleagues", (ENTERPRISE,)),
    # providers
    PageType("our instruments", "/manage/instruments", (PROVIDER,)),
    PageType("booking rules", "/manage/instruments", (PROVIDER,), follow=r"^/manage/instruments/[^/]+$"),
    PageType(
        "instrument record",
        "/manage/instruments",
        (PROVIDER,),
        follow=r"^/manage/instruments/[^/]+$",
        then=r"/record$",
    ),
    PageType("booking request", "/bookings/?state=requested", (PROVIDER,), follow=r"^/bookings/\d+$"),
    PageType("provider bank account", "/vouchers/provider/bank-account", (PROVIDER,)),  # issue 21
    # use at the instrument (issue 18): the QR label's short URL, the label and the instrument's use
    PageType("at the instrument", "/i/{instrument}", (ENTERPRISE, PROVIDER)),
    PageType("instrument use", "/manage/instruments/{instrument}/usage", (PROVIDER,)),
    # the bureau's review desk
    PageType("review desk", "/review/", BUREAU),
    PageType("application review", "/review/applications/{application}", (REVIEWER, ADMIN)),
    # (no "verification review": the demo holds no verification request to open)
    PageType("bank account review", "/review/bank-accounts/{bank_account}", (REVIEWER, ADMIN)),
    PageType("claim review", "/review/?kind=claim", (REVIEWER, FINANCE), follow=r"^/vouchers/claims/\d+$"),
    PageType("audit log", "/review/audit", (REVIEWER, ADMIN)),
    PageType("scheme", "/review/scheme", (ADMIN,)),
    # finance
    PageType("finance", "/finance/", BUREAU),
    PageType("disbursement batches", "/finance/batches", (FINANCE, ADMIN)),
    PageType("disbursement batch", "/finance/batches", (FINANCE,), follow=r"^/finance/batches/\d+$"),
    # dashboard
    PageType("dashboard", "/dashboard/", BUREAU),
    PageType("ranking", "/dashboard/ranking", BUREAU),
    # national reporting (issue 19)
    PageType("national reports", "/reports/", (PROVIDER, REVIEWER, ADMIN)),
    PageType("open-sharing evaluation", "/reports/evaluation", (REVIEWER, ADMIN)),
    PageType("purchase checks", "/reports/purchase-checks", (REVIEWER, ADMIN)),
    PageType(
        "score sheet", "/reports/evaluation", (REVIEWER, ADMIN), follow=r"^/reports/evaluation/score-sheet\?"
    ),
    # the admin console
    PageType("admin console", "/admin/", (ADMIN,)),
    PageType("institutions", "/admin/institutions", (ADMIN,)),
    PageType("new institution", "/admin/institutions/new", (ADMIN,)),
    PageType("institution", "/admin/institutions", (ADMIN,), follow=r"^/admin/institutions/\d+$"),
    PageType("enterprises", "/admin/enterprises", (ADMIN,)),
    PageType("categories", "/admin/categories", (ADMIN,)),
    PageType("schemes", "/admin/schemes", (ADMIN,)),
    PageType("catalogue imports", "/admin/imports", (ADMIN,)),
    PageType("catalogue import", "/admin/imports", (ADMIN,), follow=r"^/admin/imports/\d+$"),
    PageType("users", "/admin/users", (ADMIN,)),
    PageType("new user", "/admin/users/new", (ADMIN,)),
    PageType("user", "/admin/users", (ADMIN,), follow=r"^/admin/users/\d+$"),
    PageType("failed notifications", "/notifications/failed", (ADMIN,)),
    PageType("booking credit", "/credit/", (ENTERPRISE, PROVIDER, REVIEWER, ADMIN)),
    PageType("booking credit rules", "/credit/rules", (ADMIN,)),
    PageType("waitlist", "/waitlist/", (ENTERPRISE,)),
    PageType(
        "join the waitlist",
        "/waitlist/join?instrument={instrument}&starts_at={wait_start}&ends_at={wait_end}",
        (ENTERPRISE,),
    ),
)


def pages_for(role: str) -> list[PageType]:
    return [page for page in PAGES if role in page.roles]


def sign_in(page, base: str, role: str, language: str) -> None:
    """Sign in as the role's demo user (unless anonymous) and switch the interface language."""
    if role != ANONYMOUS:
        page.goto(f"{base}/login")
        page.fill("input[name=username]", role)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.locator("form [type=submit]").click()
        page.wait_for_url(re.compile(r"/instruments/"))
    page.goto(f"{base}/language/{language}")


def _first_link(page, pattern: str) -> str | None:
    hrefs = page.eval_on_selector_all("main a[href]", "links => links.map(a => a.getAttribute('href'))")
    for href in hrefs:
        parts = urlsplit(href)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if re.search(pattern, target):
            return target
    return None


def page_values(app) -> dict[str, str]:
    """The demo objects that fixed paths name: a bookable instrument of 聊城大学 (the provider's), and
    a voucher application (one still waiting for a decision when there is one: its decision form),
    and a bank account (the review queues list only open ones)."""
    from sqlalchemy import select

    from portal.accounts.models import BankAccount, Institution
    from portal.booking.models import BookingSeries
    from portal.catalog.models import Instrument, InstrumentStatus
    from portal.extensions import db
    from portal.vouchers.models import ApplicationState, VoucherApplication

    with app.app_context():
        code = db.session.scalar(
            select(Instrument.code)
            .join(Institution)
            .where(Institution.name == "聊城大学", Instrument.status == InstrumentStatus.NORMAL)
            .order_by(Instrument.code)
        )
        application = db.session.scalar(
            select(VoucherApplication.id).order_by(
                (VoucherApplication.state == ApplicationState.SUBMITTED).desc(), VoucherApplication.id
            )
        )
        bank_account = db.session.scalar(select(BankAccount.id).order_by(BankAccount.id))
        series = db.session.scalar(select(BookingSeries.id).order_by(BookingSeries.id))
    # A morning hour a week ahead, to wait for (the join page shows any period it is given).
    wait_start = clock.local_datetime_to_utc(clock.local_today() + timedelta(days=7), time(9, 0))
    return {
        "wait_start": clock.iso_utc(wait_start) or "",
        "wait_end": clock.iso_utc(wait_start + timedelta(hours=1)) or "",
        "instrument": code,
        "application": str(application),
        "bank_account": str(bank_account),
        "series": str(series),
    }


def open_page_type(page, base: str, page_type: PageType, values: dict[str, str]) -> int:
    """Open one page of this type in the signed-in browser page; returns the HTTP status. Raises
    AssertionError when a link to follow is missing (the walk would silently shrink otherwise)."""
    response = page.goto(base + page_type.path.format(**values))
    for pattern in (page_type.follow, page_type.then):
        if pattern is None:
            continue
        target = _first_link(page, pattern)
        assert target, f"{page_type.name}: no link matching {pattern!r} on {page.url}"
        response = page.goto(base + target)
    return response.status if response else 0
