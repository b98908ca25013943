"""The access matrix: every route × every role × own and foreign objects, against one table of answers.

tests/access_matrix.txt is the portal's access policy in one place: each line one route and method
(a few POST routes have one line per action), the object its URL names, and the answer each role
gets, a single answer or own/foreign. The legend is at the top of that file; the world it is asked
about (enterprises A and B, institutions P1 and P2, the bureau) is built in tests/access_world.py.

How an answer is checked:
- every answer: the status code (for redirects, where to; for API errors, the error code; for page
  actions, the flashed message's kind);
- a POST that is refused, or only shows its form again: no INSERT, UPDATE or DELETE that changed a
  row was committed (so no audit row, no state change) and no file was stored;
- a POST meant to work (DONE, DONE200, MADE) runs on a fresh copy of its object, made for that one
  request, so the shared objects keep the state the other lines need; and it must write something.

Around the table: every route of the app must be in it; lists (pages, API, calendar feeds) hold only
the role's own objects; every foreign id is answered exactly as a missing one; the API ignores
browser sessions; no page POST works without its CSRF token.
"""

from __future__ import annotations

import io
import itertools
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import and_, select

from portal.accounts import services as accounts
from portal.accounts import users
from portal.booking.models import Booking, BookingSeries, ServiceFile, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.permissions import Role
from portal.credit.models import Violation
from portal.extensions import db
from portal.finance.models import ExportJob
from portal.notifications.models import Notification
from portal.vouchers.models import Claim, RedemptionMode, Voucher, VoucherApplication
from portal.waitlist.models import WaitlistEntry
from tests.access_world import (
    ACCOUNT_REQUESTS,
    HOLDER_CHANGING,
    NOW,
    PDF,
    ROLES,
    World,
    build_world,
    console_csv,
    fill,
    other,
    own_side,
    photo_bytes,
    restore_holders,
    series_slot,
    stored_files,
    take_flashes,
)
from tests.conftest import _clean_postgres, app_in_context, service_missing
from tests.factories import PASSWORD, extract_csrf, valid_uscc

# --- the answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    label: str
    to: str | None = None  # a redirect's target (path)
    flash: str | None = None  # the flash category a page action must leave
    writes: bool = False  # meant to change something: runs on a fresh copy, must write

    def __repr__(self) -> str:
        return self.label


OK = Answer(200, "OK")
FORM = Answer(200, "FORM")  # a POST that only re-shows its form (let in, nothing written)
NF = Answer(404, "NF")  # not found: the same answer as for an id that does not exist
FB = Answer(403, "FB")  # forbidden: the role may not use this route at all
UA = Answer(401, "UA")  # API without a (valid) bearer token
CONFLICT = Answer(409, "CONFLICT")  # let in, but the object's state says no
LOGIN = Answer(302, "LOGIN", to="/login")
HOME = Answer(302, "HOME", to="/instruments/")
DESK = Answer(302, "DESK", to="/review/")
REFUSED = Answer(302, "REFUSED", flash="danger")  # a page action refused with a message
NOOP = Answer(302, "NOOP", to="/notifications/")  # as for a missing id; nothing written
DONE = Answer(302, "DONE", writes=True)  # a page action that works
DONE200 = Answer(200, "DONE200", writes=True)  # an API action that works
MADE = Answer(201, "MADE", writes=True)  # an API POST that creates
GONE = Answer(204, "GONE", writes=True)  # an API DELETE that works

ANSWERS = {
    a.label: a
    for a in (OK, FORM, NF, FB, UA, CONFLICT, LOGIN, HOME, DESK, REFUSED, NOOP, DONE, DONE200, MADE, GONE)
}
Cell = Answer | tuple[Answer, Answer]
COLUMNS = ("anon", "ent", "prov", "reviewer", "finance", "admin")
TABLE = Path(__file__).with_name("access_matrix.txt")


REASON = {"reason": "设备临时故障"}
COMMENT = {"comment": "证明材料不全"}


def _claim_body(o: dict, _role: str) -> dict:
    return {"voucher_id": o["voucher_id"], "service_record_ids": [o["record_id"]]}


def _upload(_o: dict, _role: str) -> dict:
    return {"kind": "result", "file": (io.BytesIO(PDF), "结果.pdf")}


_accounts = itertools.count(1)


def _bank_account(_o: dict, role: str) -> dict:
    """A new account each time (the same one again would be refused as already waiting)."""
    side = "B" if role == "ent_b" else "A"
    return {
        "account_name": f"聊城矩阵科技有限公司{side}",
        "bank_name": "中国农业银行聊城分行",
        "account_number": f"1523 0100 {next(_accounts):08d}",
    }


def _provider_bank_account(_o: dict, role: str) -> dict:
    """A new account of the provider's institution each time."""
    return {
        "account_name": f"矩阵服务机构{'B' if role == 'prov_p2' else 'A'}",
        "bank_name": "中国农业银行聊城分行",
        "account_number": f"1523 0200 {next(_accounts):08d}",
    }


# What each request sends besides its URL: a query string, a page form (the CSRF token is added), a
# JSON body, or a multipart body. A callable gets the object's URL parameters and the role.
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("/instruments/<code>/book", "GET"): {"query": {"start": "2026-12-09T02:00:00Z"}},
    ("/instruments/<code>/book", "POST"): {"form": {"starts_at": "2026-12-09T02:00:00Z"}},
    ("/login", "POST"): {"form": {"username": "matrix_nobody", "password": "wrong-password"}},
    ("/bookings/<int:booking_id>/reject", "POST"): {"form": REASON},
    ("/bookings/<int:booking_id>/cancel", "POST"): {"form": REASON},
    ("/bookings/<int:booking_id>/complete", "POST"): {"form": {"samples": "2", "service_type": "analysis"}},
    ("/bookings/<int:booking_id>/rate", "POST"): {"form": {"rating": "5"}},
    ("/bookings/<int:booking_id>/files", "POST"): {"form": _upload},
    ("/notifications/", "POST"): {"form": {"email_notifications": "y"}},
    ("/vouchers/claims/<int:claim_id>", "POST submit"): {"form": {"claim_action": "submit"}},
    ("/vouchers/claims/<int:claim_id>", "POST delete"): {"form": {"claim_action": "delete"}},
    ("/vouchers/claims/<int:claim_id>", "POST approve"): {"form": {"approve": "1"}},
    ("/review/applications/<int:application_id>", "POST"): {"form": {"reject": "1", **COMMENT}},
    ("/review/verifications/<int:request_id>", "POST"): {"form": {"reject": "1", **REASON}},
    ("/admission/<int:admission_id>", "POST"): {"form": {"reject": "1", **COMMENT}},
    ("/admission/institutions/<int:institution_id>/standing", "POST"): {"form": {"suspend": "1", **REASON}},
    ("/vouchers/bank-account", "POST"): {"form": _bank_account},
    ("/review/bank-accounts/<int:account_id>", "POST"): {"form": {"verify": "1"}},
    ("/vouchers/provider/bank-account", "POST"): {"form": _provider_bank_account},
    ("/review/bank-accounts/<int:account_id>", "POST provider"): {
        "form": {"verify": "1", "reason": "机构账户已核对"}
    },
    ("/vouchers/claims/<int:claim_id>/revise", "POST"): {"form": {"reply": "已补充清晰的付款凭证扫描件"}},
    ("/api/v1/tokens", "POST"): {
        "json": lambda _o, role: (
            {"username": f"matrix_{role}", "password": PASSWORD}
            if role != "anon"
            else {"username": "matrix_nobody", "password": "wrong-password"}
        )
    },
    ("/api/v1/bookings", "POST"): {
        "json": lambda o, _role: {
            "instrument_code": o["code"],
            "mode": "sample",
            "sample_count": 1,
            "sample_description": "粉末样品",
            "sample_delivery_on": "2026-12-10",
            "purpose": "成分分析",
        }
    },
    ("/api/v1/bookings/<int:id>/reject", "POST"): {"json": REASON},
    ("/api/v1/bookings/<int:id>/cancel", "POST"): {"json": REASON},
    ("/api/v1/bookings/<int:id>/complete", "POST"): {"json": {"samples": 2}},
    ("/api/v1/bookings/<int:id>/rate", "POST"): {"json": {"rating": 5}},
    ("/api/v1/service-records/<int:id>/files", "POST"): {"multipart": _upload},
    ("/api/v1/voucher-applications", "POST"): {"json": {"amount_fen": 100_000, "plan": "检测计划"}},
    ("/api/v1/voucher-applications/<int:id>/reject", "POST"): {"json": COMMENT},
    ("/api/v1/voucher-applications/<int:id>/return", "POST"): {"json": COMMENT},
    ("/api/v1/claims", "POST"): {"json": _claim_body},
    ("/api/v1/claims/preview", "POST"): {"json": _claim_body},
    ("/api/v1/claims/<int:id>/reject", "POST"): {"json": COMMENT},
    ("/api/v1/claims/<int:id>/return", "POST"): {"json": COMMENT},
    ("/api/v1/finance/totals", "GET"): {"query": {"month": "2026-12"}},
    # instrument upkeep
    ("/manage/instruments/<code>/photos", "POST"): {
        "form": lambda _o, _role: {"photo-file": (io.BytesIO(photo_bytes()), "照片.png")}
    },
    ("/api/v1/instruments/<code>", "PATCH"): {
        "json": lambda _o, _role: {"operator_name": f"矩阵{next(_renames)}"}  # a change every time
    },
}
_renames = itertools.count(1)


def _report_query(o: dict, _role: str) -> dict:
    return {"year": 2026, "institution_id": o["institution_id"]}


# Issue 19: a report names its institution in the query; a provider asking for another's is refused.
REQUESTS.update(
    {
        (rule, "GET"): {"query": _report_query}
        for rule in (
            "/reports/",
            "/reports/instruments.<fmt>",
            "/reports/service-records.<fmt>",
            "/reports/evaluation",
            "/reports/evaluation.<fmt>",
            "/reports/evaluation/score-sheet",
            "/reports/evaluation/score-sheet.<fmt>",
            "/api/v1/reports/nrii/instruments",
            "/api/v1/reports/nrii/service-records",
            "/api/v1/reports/evaluation",
        )
    }
)


def _waitlist_body(o: dict, _role: str) -> dict:
    n = next(_renames)
    start = datetime(2026, 12, 21, 1, 0, tzinfo=UTC) + timedelta(days=n % 4, hours=n % 8)
    return {
        "instrument_code": o["code"],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
    }


def _waitlist_form(o: dict, role: str) -> dict:
    body = _waitlist_body(o, role)
    return {"instrument": body["instrument_code"], "starts_at": body["starts_at"], "ends_at": body["ends_at"]}


# Issue 17: a different price and rule each time, so every allowed save writes.
_prices = itertools.count(1)
REQUESTS.update(
    {
        ("/manage/instruments/<code>/prices", "POST"): {
            # The sample price stays: the world's claims are for sample services.
            "form": lambda _o, _role: {
                "enterprise-self-price": str(100 + next(_prices)),
                "enterprise-self-unit": "hour",
                "enterprise-sample-price": "80",
            }
        },
        ("/api/v1/instruments/<code>/qualifications", "POST"): {
            "json": lambda _o, _role: {
                "username": "matrix_ent_a",
                "valid_until": "2027-06-30",
                "note": "考核合格",
            }
        },
        ("/api/v1/instruments/<code>/booking-policy", "PUT"): {
            "json": lambda _o, _role: {"min_notice_hours": next(_prices) % 48}
        },
        # issue 18: the waitlist (a free hour of its own each time) and booking credit
        ("/api/v1/waitlist", "POST"): {"json": _waitlist_body},
        # the waitlist's page form names the same as the API's body (a free hour of its own each time)
        ("/waitlist/join", "GET"): {"query": _waitlist_form},
        ("/waitlist/join", "POST"): {"form": lambda o, role: {**_waitlist_form(o, role), "wanted": "slot"}},
        ("/credit/violations/<int:violation_id>/waive", "POST"): {"form": {"reason": "设备故障，非企业原因"}},
        ("/api/v1/credit/violations/<int:id>/waive", "POST"): {"json": {"reason": "设备故障，非企业原因"}},
        ("/credit/rules", "POST"): {
            "form": {"max_violations": "100", "window_days": "90", "suspension_days": "30"}
        },
        ("/manage/instruments/<code>/use-rules", "POST"): {
            "form": lambda _o, _role: (
                {"rules-operations": ["self", "staff"], "rules-requires_qualification": "y"}
                if next(_prices) % 2
                else {"rules-operations": ["staff"]}
            )
        },
    }
)

# Issue 18: a provider checks in or out for the user with a reason (the enterprise's is kept too).
REQUESTS.update(
    {
        ("/bookings/<int:booking_id>/check-in", "POST"): {"form": {"reason": "用户手机没电"}},
        ("/bookings/<int:booking_id>/check-out", "POST"): {"form": {"reason": "用户忘记签退"}},
        ("/api/v1/bookings/<int:id>/check-in", "POST"): {"json": {"reason": "用户手机没电"}},
        ("/api/v1/bookings/<int:id>/check-out", "POST"): {"json": {"reason": "用户忘记签退"}},
        ("/manage/instruments/<code>/device-keys", "POST"): {"form": {"label": "矩阵PC"}},
        # Issue 19: this year's report submitted final (last year's is, in the world); a stretch of the
        # institution's own use, yesterday.
        ("/reports/submit", "POST"): {"form": {"year": "2026"}},
        ("/reports/evaluation/score-sheet", "POST"): {
            "form": lambda o, _role: {
                "institution_id": str(o["institution_id"]),
                "year": "2026",
                "results": "4",
                "rules": "8.5",
                "openness": "9",
            }
        },
        ("/reports/purchase-checks", "POST"): {
            "form": {
                "category": "0102",
                "name": "气质联用仪",
                "price": "1200000",
                "conclusion": "可共享",
                "submit": "y",
            }
        },
        ("/manage/instruments/<code>/internal-use", "POST"): {
            "form": {"day": "2026-12-06", "starts": "09:00", "ends": "11:30", "user_name": "矩阵"}
        },
        ("/api/v1/instruments/<code>/device-keys", "POST"): {"json": {"label": "矩阵PC"}},
        ("/api/v1/instruments/<code>/usage-events", "POST"): {
            "json": {"event": "start", "at": "2026-12-07T01:00:00Z", "username": "x", "idempotency_key": "m1"}
        },
    }
)


# Issue 18: recurring bookings on the sides' series instruments (a fresh pair of dates each time).
def _series_body(o: dict, _role: str, *, fresh: bool = True) -> dict:
    start, _end = series_slot() if fresh else (datetime(2027, 1, 4, 1, 0, tzinfo=UTC),) * 2
    return {
        "instrument_code": o["code"].replace("-001", "-SER"),
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "repeat": {"every": "day", "count": 2},
        "skip_conflicts": True,
        "purpose": "例行检测",
    }


REQUESTS.update(
    {
        ("/instruments/<code>/book-series", "GET"): {"query": {"start": "2026-12-16T00:30:00Z"}},
        ("/instruments/<code>/book-series", "POST"): {"form": {"starts_at": "2026-12-16T00:30:00Z"}},
        ("/bookings/series/<int:series_id>/cancel", "POST"): {"form": REASON},
        ("/api/v1/booking-series", "POST"): {"json": _series_body},
        ("/api/v1/booking-series/preview", "POST"): {"json": lambda o, r: _series_body(o, r, fresh=False)},
        ("/api/v1/booking-series/<int:id>/cancel", "POST"): {"json": REASON},
    }
)

# --- admin console (issue 13) ---------------------------------------------------------------------


def _institution_form(o: dict, _role: str) -> dict:
    return {
        "name": f"矩阵单位{next(_console_serial)}",
        "uscc": o.get("uscc") or valid_uscc(),
        "kind": "institute",
        "county": "东昌府区",
        "is_local": "y",
        "in_province": "y",
    }


def _catalogue_file(_o: dict, _role: str) -> dict:
    return {"file": (io.BytesIO(console_csv()), "矩阵仪器.csv")}


_console_serial = itertools.count(1)
REQUESTS.update(
    {
        ("/admin/institutions/new", "POST"): {"form": _institution_form},
        ("/admin/institutions/<int:institution_id>", "POST"): {"form": _institution_form},
        ("/admin/imports", "POST"): {"form": _catalogue_file},
        ("/admin/synonyms", "POST"): {
            "form": lambda _o, _role: {"term": f"矩阵简称{next(_console_serial)}", "expansion": "矩阵全称"}
        },
        ("/api/v1/catalog/imports", "POST"): {
            "multipart": lambda o, r: {**_catalogue_file(o, r), "dry_run": "true"}
        },
    }
)

# --- vouchers at payment (issue 21): the enterprise's voucher code on the provider's service ---------


def _redemption_body(o: dict, _role: str) -> dict:
    return {"service_record_id": o["record_id"], "voucher_code": o["voucher_code"]}


REQUESTS.update(
    {
        ("/vouchers/redemptions/records/<int:record_id>", "POST preview"): {
            "form": lambda o, _role: {"voucher_code": o["voucher_code"]}
        },
        ("/vouchers/redemptions/records/<int:record_id>", "POST reserve"): {
            "form": lambda o, _role: {"voucher_code": o["voucher_code"], "reserve": "y"}
        },
        ("/vouchers/redemptions/<int:claim_id>/submit", "POST"): {
            "form": lambda o, _role: {"enterprise_paid": o["share"]}
        },
        ("/vouchers/redemptions/<int:claim_id>/withdraw", "POST"): {"form": {"reason": "错刷了创新券"}},
        ("/api/v1/redemptions", "POST"): {"json": _redemption_body},
        ("/api/v1/redemptions/preview", "POST"): {"json": _redemption_body},
    }
)
# --- end of vouchers at payment ----------------------------------------------------------------------

WRITING = (
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
)  # the methods that send a body and must write exactly when they should
REQUESTS.update(ACCOUNT_REQUESTS)

API_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "invalid_transition"}
COLUMN_OF = {"anon": "anon", "ent_a": "ent", "ent_b": "ent", "prov_p1": "prov", "prov_p2": "prov"}


@dataclass(frozen=True)
class Row:
    rule: str
    method: str  # "GET", "POST", "PATCH", or "POST <action>" for one of several actions of a route
    obj: str | None
    cells: dict[str, Cell]

    @property
    def verb(self) -> str:
        return self.method.split()[0]

    @property
    def api(self) -> bool:
        return self.rule.startswith("/api/")

    def answer(self, role: str, which: str) -> Answer:
        cell = self.cells[COLUMN_OF.get(role, role)]
        if isinstance(cell, tuple):
            return cell[0] if which == "own" else cell[1]
        return cell

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"


def _cell(text: str) -> Cell:
    own, _slash, foreign = text.partition("/")
    return (ANSWERS[own], ANSWERS[foreign]) if foreign else ANSWERS[own]


def read_table(path: Path = TABLE) -> list[Row]:
    """The lines of access_matrix.txt: method, route, object, then one answer per column."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        method, rule, obj, *cells = line.split()
        assert len(cells) == len(COLUMNS), f"{path.name}: {line!r} needs {len(COLUMNS)} answers"
        answers = {column: _cell(cell) for column, cell in zip(COLUMNS, cells, strict=True)}
        rows.append(Row(rule, method.replace(":", " "), None if obj == "-" else obj, answers))
    return rows


ROWS = read_table()


# --- the world ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One database per backend with the whole world in it, and one signed-in client per role."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("matrix") / "portal.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database")
        if url is None:
            service_missing("PostgreSQL")
        _clean_postgres(url)
    uploads = tmp_path_factory.mktemp("matrix-uploads")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clock, "utcnow", lambda: NOW)
        # The matrix signs in every role and asks for tokens many times; the limits have their own tests.
        contexts = app_in_context(url, UPLOAD_FOLDER=str(uploads), RATELIMIT_ENABLED=False)
        app = next(contexts)
        world = build_world(app)
        try:
            yield world
        finally:
            for detach in world.detach:
                detach()
            next(contexts, None)


# --- one check ------------------------------------------------------------------------------------


def _request(world: World, row: Row, role: str, params: dict, *, bearer: bool = True, csrf: bool = True):
    client = world.clients[role]
    spec = REQUESTS.get((row.rule, row.method), {})

    def value(key: str) -> Any:
        item = spec.get(key)
        return item(params, role) if callable(item) else item

    url = fill(row.rule, params)
    kwargs: dict[str, Any] = {"headers": {}}
    if row.api and bearer and role != "anon":
        kwargs["headers"]["Authorization"] = f"Bearer {world.tokens[role]}"
    if spec.get("query"):
        kwargs["query_string"] = value("query")
    if row.verb in WRITING:
        if row.api:
            if "multipart" in spec:
                kwargs["data"] = value("multipart")
            else:
                kwargs["json"] = value("json") or {}
        else:
            kwargs["data"] = {**(value("form") or {}), **({"csrf_token": world.csrf[role]} if csrf else {})}
    return client.open(url, method=row.verb, **kwargs)


def check(world: World, row: Row, role: str, which: str, expected: Answer, **options: Any) -> list[str]:
    """Ask as `role` about its `which` object; what differs from `expected`, in words."""
    side = own_side(role) if which == "own" else other(own_side(role))
    params: dict | None = None
    if row.obj and expected.writes:
        params = world.fresh(row.obj, role, side)
    if row.obj and params is None:
        params = world.params(row.obj, role, which)
    posting = row.verb in WRITING
    mark, files = world.writes.mark(), stored_files(world.app)
    response = _request(world, row, role, params or {}, **options)
    flashes = [] if row.api else take_flashes(world.clients[role])
    problems = []
    if response.status_code != expected.status:
        body = response.get_data(as_text=True)[:200] if response.status_code >= 400 else ""
        problems.append(f"status {response.status_code}, expected {expected.status} {body}")
    if expected.to and response.status_code == 302:
        target = urlsplit(response.headers["Location"]).path
        if not target.startswith(expected.to):
            problems.append(f"redirect to {target}, expected {expected.to}")
    if row.api and response.status_code in API_CODES:
        code = (response.get_json(silent=True) or {}).get("error", {}).get("code")
        if code != API_CODES[response.status_code]:
            problems.append(f"error code {code!r}, expected {API_CODES[response.status_code]!r}")
    categories = {category for category, _message in flashes}
    if expected.flash and expected.flash not in categories:
        problems.append(f"flashes {flashes}, expected a {expected.flash!r} one")
    if expected.writes and "danger" in categories:
        problems.append(f"refused with {flashes}")
    if posting:
        written = world.writes.since(mark) + sorted(stored_files(world.app) - files)
        if expected.writes and not written:
            problems.append("nothing was written")
        if not expected.writes and written:
            problems.append(f"a refused request wrote {written}")
    if row.rule == "/logout" and role != "anon" and response.status_code == 302:
        world.login(role)  # signing out ended the client's session: sign it in again
    if row.rule == "/api/v1/tokens/current" and response.status_code == 204:
        world.tokens[role], _row = accounts.issue_api_token(world.user(role))  # it revoked the role's token
    if row.rule in HOLDER_CHANGING:
        restore_holders(world)  # the other checks need A's and B's registrants as holders
    return [f"{role} {which} {params}: {p}" for p in problems]


def _checks(row: Row) -> Iterator[tuple[str, str]]:
    for role in ROLES:
        for which in ("own", "foreign") if row.obj else ("own",):
            yield role, which


# --- lists and ids: nothing of another side, under any id ----------------------------------------

SIDED = ("ent_a", "ent_b", "prov_p1", "prov_p2")


def _visible(world: World, role: str) -> dict[str, set]:
    """What the role may see, worked out from the database (not from the portal's own rules)."""
    side = own_side(role)
    own_instruments = select(Instrument.id).where(Instrument.institution_id == world.institutions[side])
    if role.startswith("ent"):
        mine = Booking.enterprise_id == world.enterprises[side]
        my_series = BookingSeries.enterprise_id == world.enterprises[side]
    else:
        mine = Booking.instrument_id.in_(own_instruments)
        my_series = BookingSeries.instrument_id.in_(own_instruments)
    bookings = set(db.session.scalars(select(Booking.id).where(mine)))
    records = set(db.session.scalars(select(ServiceRecord.id).where(ServiceRecord.booking_id.in_(bookings))))
    enterprise = world.enterprises[side] if role.startswith("ent") else None
    # Issue 21: a provider sees the redemptions at payment of its own institution, and no other claim.
    claims = (
        Claim.enterprise_id == enterprise
        if role.startswith("ent")
        else and_(Claim.mode == RedemptionMode.AT_PAYMENT, Claim.institution_id == world.institutions[side])
    )
    return {
        "booking": bookings,
        "series": set(db.session.scalars(select(BookingSeries.id).where(my_series))),
        "record": records,
        "file": set(db.session.scalars(select(ServiceFile.id).where(ServiceFile.record_id.in_(records)))),
        "claim": set(db.session.scalars(select(Claim.id).where(claims))),
        "voucher": set(db.session.scalars(select(Voucher.id).where(Voucher.enterprise_id == enterprise))),
        "application": set(
            db.session.scalars(
                select(VoucherApplication.id).where(VoucherApplication.enterprise_id == enterprise)
            )
        ),
    }


def _api_ids(world: World, role: str, path: str, **query: str) -> set[int]:
    """Every id of an API list, page by page."""
    ids: set[int] = set()
    page = 1
    while True:
        response = world.clients[role].get(
            path,
            query_string={**query, "page": page, "per_page": 100},
            headers={"Authorization": f"Bearer {world.tokens[role]}"},
        )
        assert response.status_code == 200, (role, path, response.status_code)
        ids |= {item["id"] for item in response.json["items"]}
        if page * 100 >= response.json["total"]:
            return ids
        page += 1


def _page_ids(world: World, role: str, path: str, pattern: str) -> set[int]:
    response = world.clients[role].get(path)
    assert response.status_code == 200, (role, path, response.status_code)
    return {int(n) for n in re.findall(pattern, response.get_data(as_text=True))}


def _credit_ids(world: World, role: str) -> set[int]:
    """The violations the credit API lists to the role (an enterprise its own record)."""
    path = "/api/v1/credit" if role.startswith("ent") else "/api/v1/credit/violations"
    answer = world.clients[role].get(path, headers={"Authorization": f"Bearer {world.tokens[role]}"})
    assert answer.status_code == 200, (role, path, answer.status_code)
    return {item["id"] for item in answer.json["violations" if role.startswith("ent") else "items"]}


def _waitlist_ids(world: World, role: str) -> set[int]:
    answer = world.clients[role].get(
        "/api/v1/waitlist", headers={"Authorization": f"Bearer {world.tokens[role]}"}
    )
    assert answer.status_code == 200, (role, answer.status_code)
    return {item["id"] for item in answer.json["items"]}


def _own_entries(enterprise_id: int) -> set[int]:
    return set(
        db.session.scalars(select(WaitlistEntry.id).where(WaitlistEntry.enterprise_id == enterprise_id))
    )


def _own_violations(bookings: set[int]) -> set[int]:
    return set(db.session.scalars(select(Violation.id).where(Violation.booking_id.in_(bookings))))


@pytest.mark.parametrize("role", SIDED)
def test_lists_show_only_what_the_role_owns(world: World, role: str) -> None:
    visible = _visible(world, role)
    other_code = world.instruments[other(own_side(role))]
    lists = {
        "API bookings": (_api_ids(world, role, "/api/v1/bookings"), visible["booking"]),
        "API bookings of the other side's instrument": (
            _api_ids(world, role, "/api/v1/bookings", instrument_code=other_code),
            visible["booking"],
        ),
        "booking pages": (
            _page_ids(world, role, "/bookings/?state=", r'href="/bookings/(\d+)"')
            | _page_ids(world, role, f"/bookings/?state=&instrument={other_code}", r'href="/bookings/(\d+)"'),
            visible["booking"],
        ),
        "API claims": (_api_ids(world, role, "/api/v1/claims"), visible["claim"]),
        "API vouchers": (_api_ids(world, role, "/api/v1/vouchers"), visible["voucher"]),
        "private calendar": (
            _page_ids(
                world,
                role,
                f"/calendar/{world.params('calendar', role, 'own')['token']}.ics",
                r"UID:booking-(\d+)@",
            ),
            visible["booking"],
        ),
    }
    if role.startswith("ent"):
        lists["API waitlist"] = (_waitlist_ids(world, role), _own_entries(world.enterprises[own_side(role)]))
        lists["voucher desk: claims"] = (
            _page_ids(world, role, "/vouchers/", r'href="/vouchers/claims/(\d+)"'),
            visible["claim"],
        )
        lists["voucher desk: vouchers"] = (
            _page_ids(world, role, "/vouchers/", r'href="/vouchers/voucher/(\d+)"'),
            visible["voucher"],
        )
    own_notifications = set(
        db.session.scalars(select(Notification.id).where(Notification.recipient_id == world.users[role]))
    )
    lists["notifications"] = (
        _page_ids(world, role, "/notifications/", r'action="/notifications/(\d+)/open"'),
        own_notifications,
    )
    lists["booking credit"] = (_credit_ids(world, role), _own_violations(visible["booking"]))
    problems = [
        f"{name}: {sorted(listed - own)} are not the role's"
        for name, (listed, own) in lists.items()
        if listed - own
    ]
    assert not problems, "\n".join(problems)
    # Not vacuous: the role's own objects are there (a provider has no vouchers to list).
    assert lists["API bookings"][0] and lists["booking pages"][0] and lists["private calendar"][0]
    assert lists["notifications"][0] and lists["booking credit"][0]
    if role.startswith("ent"):
        assert lists["API claims"][0] and lists["API vouchers"][0] and lists["voucher desk: claims"][0]
        assert lists["API waitlist"][0]
    assert lists["API claims"][0]  # issue 21: a provider's redemptions at payment too
    managed = world.clients[role].get("/manage/instruments").get_data(as_text=True)
    if role.startswith("prov"):
        assert world.instruments[own_side(role)] in managed and other_code not in managed


# kind -> the GET routes naming an object of that kind (API and pages)
DETAIL_ROUTES = {
    "booking": ("/bookings/{id}", "/api/v1/bookings/{id}"),
    "series": ("/bookings/series/{id}", "/api/v1/booking-series/{id}"),
    "record": ("/api/v1/service-records/{id}",),
    "claim": ("/vouchers/claims/{id}", "/api/v1/claims/{id}", "/vouchers/claims/{id}/revise"),
    "voucher": ("/vouchers/voucher/{id}", "/api/v1/vouchers/{id}"),
    "application": ("/api/v1/voucher-applications/{id}", "/vouchers/applications/{id}/resubmit"),
}
FILE_ROUTES = ("/service-records/{record}/files/{file}", "/api/v1/service-records/{record}/files/{file}")
MISSING = 999_999
CSRF_VALUE = re.compile(r'name="csrf_token"[^>]*value="[^"]*"')


@pytest.mark.parametrize("role", SIDED)
def test_no_foreign_id_is_found_and_none_answers_unlike_a_missing_one(world: World, role: str) -> None:
    """Every object of the other side, under every detail route: 404, word for word as for no object."""
    client, headers = world.clients[role], {"Authorization": f"Bearer {world.tokens[role]}"}
    visible = _visible(world, role)
    models = {"booking": Booking, "series": BookingSeries, "record": ServiceRecord, "claim": Claim}
    models["voucher"] = Voucher
    models["application"] = VoucherApplication

    def get(path: str):
        return client.get(path, headers=headers if path.startswith("/api/") else {})

    def body(response, path: str) -> str:
        # What may differ: the page's own address (in its language links) and its CSRF token,
        # which is signed with the time.
        return CSRF_VALUE.sub("", response.get_data(as_text=True)).replace(path, "<path>")

    problems = []

    def expect_missing(path: str, missing_path: str) -> None:
        answer, missing = get(path), get(missing_path)
        if answer.status_code != 404:
            problems.append(f"{path}: {answer.status_code}")
        elif body(answer, path) != body(missing, missing_path):
            problems.append(f"{path}: answers unlike {missing_path}")

    for kind, routes in DETAIL_ROUTES.items():
        if kind in ("application", "claim") and role.startswith("prov"):
            # The resubmit and revise pages are the enterprises' (403 for everyone else).
            routes = [r for r in routes if not r.endswith(("/resubmit", "/revise"))]
        foreign = set(db.session.scalars(select(models[kind].id))) - visible[kind]
        assert foreign, f"no foreign {kind} to try"
        for object_id in sorted(foreign):
            for route in routes:
                expect_missing(route.format(id=object_id), route.format(id=MISSING))
    files = db.session.execute(select(ServiceFile.record_id, ServiceFile.id)).all()
    own_record = min(visible["record"])
    for record_id, file_id in files:
        if file_id in visible["file"]:
            continue
        for route in FILE_ROUTES:
            missing = route.format(record=record_id, file=MISSING)
            expect_missing(route.format(record=record_id, file=file_id), missing)
            # A foreign file under one's own record is not found either.
            expect_missing(route.format(record=own_record, file=file_id), missing)
    if role.startswith("prov"):  # issue 21: another institution's admission
        foreign_side = other(own_side(role))
        expect_missing(
            f"/admission/institutions/{world.institutions[foreign_side]}",
            f"/admission/institutions/{MISSING}",
        )
        foreign_admission = world.shared["admission"][foreign_side]["admission_id"]
        expect_missing(f"/admission/{foreign_admission}/fee-schedule", f"/admission/{MISSING}/fee-schedule")
    if role.startswith("prov"):
        foreign_code = world.instruments[other(own_side(role))]
        for page in ("", "/record", "/usage", "/label.svg"):
            expect_missing(f"/manage/instruments/{foreign_code}{page}", f"/manage/instruments/NOPE{page}")
    assert not problems, "\n".join(problems)


def test_a_private_calendar_address_needs_the_exact_secret(world: World) -> None:
    token = world.params("calendar", "ent_a", "own")["token"]
    for role in ("anon", "ent_a", "ent_b"):
        client = world.clients[role]
        assert client.get(f"/calendar/{token}x.ics").status_code == 404
        assert client.get(f"/calendar/{token[:-1]}.ics").status_code == 404


def test_exports_of_another_clerk_are_not_found(world: World) -> None:
    for role, partner in (("finance", "admin"), ("admin", "finance")):
        job = world.personal["export"][partner]["job_id"]
        for path in (f"/finance/exports/{job}", f"/finance/exports/{job}/download"):
            assert world.clients[role].get(path).status_code == 404
        assert db.session.get(ExportJob, job).user_id == world.users[partner]


# --- the API takes bearer tokens only; pages take the CSRF token -----------------------------------


@pytest.mark.parametrize("role", ["ent_a", "admin"])
def test_the_api_takes_bearer_tokens_and_ignores_browser_cookies(world: World, role: str) -> None:
    """A browser signed in with "remember me" calls the API: its cookies alone get the anonymous
    answer (the API skips CSRF checks, so a cookie must be no credential there), and they do not
    get in the way of its bearer token either."""
    rows = [row for row in ROWS if row.api and row.rule != "/api/v1/tokens"]
    browser = world.app.test_client()
    page = browser.get("/login")
    browser.post(
        "/login",
        data={
            "username": world.username(role),
            "password": PASSWORD,
            "remember": "y",
            "csrf_token": extract_csrf(page.text),
        },
    )
    assert browser.get_cookie("remember_token") is not None
    signed_in, world.clients[role] = world.clients[role], browser
    try:
        problems = [
            p for row in rows for p in check(world, row, role, "own", row.answer("anon", "own"), bearer=False)
        ]
        problems += [
            p
            for row in rows
            if row.verb == "GET"
            for p in check(world, row, role, "own", row.answer(role, "own"))
        ]
    finally:
        world.clients[role] = signed_in
    assert not problems, "\n".join(problems)


def test_a_deactivated_account_is_signed_out_everywhere(world: World) -> None:
    """Its live session (even a remembered one) and its API token stop working at once."""
    user = accounts.create_user("matrix_leaver", PASSWORD, Role.REVIEWER)
    client = world.app.test_client()
    page = client.get("/login")
    client.post(
        "/login",
        data={
            "username": user.username,
            "password": PASSWORD,
            "remember": "y",
            "csrf_token": extract_csrf(page.text),
        },
    )
    token, _row = accounts.issue_api_token(user)
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/review/").status_code == 200
    assert client.get("/api/v1/claims", headers=bearer).status_code == 200
    users.set_active(world.user("admin"), user.id, "deactivate")  # the console's switch
    response = client.get("/review/")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    assert client.get("/api/v1/claims", headers=bearer).status_code == 401


CSRF_MISSING = Answer(400, "CSRF")


def test_no_page_post_works_without_its_csrf_token(world: World) -> None:
    """Every page POST, by a role that may use it, is refused without its CSRF token; nothing is written."""
    problems = []
    for row in ROWS:
        if row.api or row.verb != "POST":
            continue
        allowed = [r for r in ROLES if row.answer(r, "own").writes or row.answer(r, "own") is FORM]
        assert allowed, f"nobody may use {row}"
        problems += check(world, row, allowed[0], "own", CSRF_MISSING, csrf=False)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_the_matrix(world: World, row: Row) -> None:
    problems = [
        p for role, which in _checks(row) for p in check(world, row, role, which, row.answer(role, which))
    ]
    assert not problems, "\n".join(problems)


def test_every_route_is_in_the_table(world: World) -> None:
    routes = {
        (rule.rule, method)
        for rule in world.app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    listed = {(row.rule, row.verb) for row in ROWS}
    lines = [(row.rule, row.method) for row in ROWS]
    assert len(lines) == len(set(lines)), "a route is in the access matrix twice"
    assert routes - listed == set(), "routes missing from the access matrix"
    assert listed - routes == set(), "rows of the access matrix for routes that do not exist"


# --- vouchers at payment (issue 21): a redemption is its provider's and its enterprise's ----------------


def _sees(world: World, role: str, path: str) -> int:
    headers = {"Authorization": f"Bearer {world.tokens[role]}"} if path.startswith("/api/") else {}
    return world.clients[role].get(path, headers=headers).status_code


def test_a_redemption_is_seen_by_its_provider_and_its_enterprise_and_no_one_else(world: World) -> None:
    """P1 serves A and B: it sees both redemptions; A sees its own, with its share, but not B's at
    P1; P2 sees neither; the bureau sees all."""
    own_a = world.shared["redemption"]["A"]["claim_id"]
    b_at_p1 = world.shared["redemption_other_customer"]["A"]["claim_id"]
    own_b = world.shared["redemption"]["B"]["claim_id"]
    seen_by = {
        own_a: {"ent_a", "prov_p1"},
        b_at_p1: {"ent_b", "prov_p1"},
        own_b: {"ent_b", "prov_p2"},
    }
    problems = []
    for claim_id, viewers in seen_by.items():
        for role in ROLES[1:]:
            expected = 200 if role in viewers or role in ("reviewer", "finance", "admin") else 404
            for path in (f"/api/v1/claims/{claim_id}", f"/vouchers/claims/{claim_id}"):
                if (answer := _sees(world, role, path)) != expected:
                    problems.append(f"{role} {path}: {answer}, expected {expected}")
    assert not problems, "\n".join(problems)
    assert {own_a, b_at_p1} <= _api_ids(world, "prov_p1", "/api/v1/claims")
    assert own_b not in _api_ids(world, "prov_p1", "/api/v1/claims")
    listed_to_a = _api_ids(world, "ent_a", "/api/v1/claims")
    assert own_a in listed_to_a and b_at_p1 not in listed_to_a
    # The enterprise sees what it owes of the fee, and that the provider is paid the rest.
    body = (
        world.clients["ent_a"]
        .get(f"/api/v1/claims/{own_a}", headers={"Authorization": f"Bearer {world.tokens['ent_a']}"})
        .json
    )
    assert body["mode"] == "at_payment" and body["payee_kind"] == "provider"
    assert body["enterprise_share_fen"] == body["fee_fen"] - body["total_fen"] > 0
    assert body["institution_id"] == world.institutions["A"]


@pytest.mark.parametrize("role", ["prov_p1", "prov_p2"])
def test_the_redemption_pages_answer_a_foreign_id_as_a_missing_one(world: World, role: str) -> None:
    """Another institution's service, or any claim but the provider's own redemptions, under the
    redemption pages and API: 404, word for word as for no object."""
    visible = _visible(world, role)
    client, headers = world.clients[role], {"Authorization": f"Bearer {world.tokens[role]}"}

    def page(path: str) -> tuple[int, str]:
        response = client.get(path)
        return response.status_code, CSRF_VALUE.sub("", response.text).replace(path, "<path>")

    problems = []
    missing_record = page(f"/vouchers/redemptions/records/{MISSING}")
    missing_claim = page(f"/vouchers/redemptions/{MISSING}/submit")
    assert missing_record[0] == missing_claim[0] == 404
    foreign_records = set(db.session.scalars(select(ServiceRecord.id))) - visible["record"]
    foreign_claims = set(db.session.scalars(select(Claim.id))) - visible["claim"]
    assert foreign_records and foreign_claims and visible["claim"]
    for record_id in sorted(foreign_records):
        if page(path := f"/vouchers/redemptions/records/{record_id}") != missing_record:
            problems.append(path)
        answer = client.post(
            "/api/v1/redemptions/preview",
            json={"service_record_id": record_id, "voucher_code": "LC2026-00000001"},
            headers=headers,
        )
        if answer.status_code != 404 or answer.json["error"]["code"] != "not_found":
            problems.append(f"preview of record {record_id}: {answer.status_code}")
    for claim_id in sorted(foreign_claims):
        if page(path := f"/vouchers/redemptions/{claim_id}/submit") != missing_claim:
            problems.append(path)
    assert not problems, "\n".join(problems)


# --- end of vouchers at payment --------------------------------------------------------------------------
