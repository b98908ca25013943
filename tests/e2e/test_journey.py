"""The whole life of a subsidy, in one headless Chromium, each step done by its own user in the pages:

a new enterprise registers and is verified, enters its bank account, which a reviewer verifies; it
finds an instrument, books machine time; the provider
confirms it, records the service with its fee and evidence; the enterprise rates it, gets a voucher (two
reviewers: above the four-eyes threshold), claims the subsidy (two reviewers again); the public notice
ends; finance builds a disbursement batch, exports it for the bank and marks it paid.

Every notification on the way is checked at both ends: the row in the recipient's in-app centre (in the
browser for several of them) and the e-mail a real SMTP server on loopback accepted for it. Along the way
the test saves screenshots of the key pages (into docs/screenshots when PORTAL_SCREENSHOTS says so).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from openpyxl import load_workbook
from playwright.sync_api import expect
from sqlalchemy import select
from stdnum.cn import uscc

from portal import BEAT_SCHEDULE
from portal.accounts.models import Institution, User
from portal.booking.models import Booking, BookingPolicy, ServiceRecord
from portal.catalog.models import Instrument, InstrumentStatus
from portal.core import clock
from portal.core.money import fen_to_yuan
from portal.extensions import db
from portal.notifications.models import EmailState, Notification
from portal.vouchers.models import Claim, Fund, FundCondition, Scheme, Voucher
from tests.e2e.conftest import answer_dialogs, serve_demo_copy
from tests.e2e.test_booking_browser import sign_in
from tests.e2e.test_voucher_browser import nav
from tests.services_runner import SmtpSink, wait_for
from tests.test_booking_files import PDF

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1280, "height": 800}
COMPANY = "聊城市晶测新材料科技有限公司"
CREDIT_CODE = "91371500MA3R7J2K0" + uscc.calc_check_digit("91371500MA3R7J2K0")
USERNAME = "jingce"
EMAIL = "wang.lei@jingce.example.cn"
CONTROLLER = "王磊"
VOUCHER_YUAN = 60_000
# A contract price above the hourly standard (with its reason), so that the subsidy passes the
# scheme's four-eyes threshold and two reviewers must approve it.
FEE_YUAN = 62_000
BANK_REFERENCE = "LCB20261223-0042"
BANK = "中国工商银行聊城高新区支行"
# Nineteen digits beginning with 0: the bank file must carry it as text, every digit.
ACCOUNT = "0160 2502 1100 0421 773"


@dataclass
class Journey:
    url: str
    app: Flask
    mail: SmtpSink


@pytest.fixture(scope="module")
def journey(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    """A copy of the demo network served over HTTP, whose mail goes over SMTP to a loopback server.

    Without REDIS_URL the delivery tasks run eagerly right after each commit, so a page's response comes
    after its notifications' mail was handed to the SMTP server.
    """
    sink = SmtpSink().start()
    try:
        with serve_demo_copy(
            request,
            tmp_path_factory.mktemp("journey"),
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=sink.port,
            MAIL_TIMEOUT=5,
        ) as portal:
            yield Journey(portal.url, portal.app, sink)
    finally:
        sink.stop()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: PORTAL_SCREENSHOTS (relative to the repository) or the test's tmp dir."""
    target = os.environ.get("PORTAL_SCREENSHOTS")
    folder = (ROOT / target) if target else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Problems:
    """What went wrong in any of the journey's browser sessions: console errors, uncaught exceptions,
    failed requests and error responses."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def watch(self, page) -> None:
        page.on("console", lambda m: self.seen.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.seen.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on(
            "response", lambda r: self.seen.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
        )

    def _failed(self, request) -> None:
        # ERR_ABORTED is the browser cancelling a request itself: a favicon still loading when the page
        # moves on, or a navigation whose response turned out to be a download (the bank export).
        if request.failure != "net::ERR_ABORTED":
            self.seen.append(f"failed: {request.method} {request.url} {request.failure}")


@pytest.fixture
def problems() -> Iterator[Problems]:
    """Checked after the test too, so that a step that fails shows what the browser saw go wrong."""
    seen = Problems()
    yield seen
    assert seen.seen == [], seen.seen


def open_session(browser, problems: Problems):
    """A browser session of its own (cookies) at 1280×800, watched for problems."""
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    problems.watch(page)
    answer_dialogs(page)
    return page


def state_of(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def yuan(fen: int) -> str:
    """Money as the pages and mails show it: ¥1,234.50."""
    return f"¥{fen_to_yuan(fen):,.2f}"


def open_from_centre(page, base: str, kind: str, mentioning: str) -> None:
    """Open a notification from the in-app centre (it is unread, and its link leads on)."""
    page.goto(f"{base}/notifications/")
    item = page.locator(f'#notifications li[data-kind="{kind}"]', has_text=mentioning)
    assert item.count() == 1, f"{kind} mentioning {mentioning} is not in the centre"
    assert "list-group-item-primary" in (item.get_attribute("class") or "")  # shown as unread
    item.get_by_role("button", name="查看").click()


class Mailbox:
    """Reads what the journey's users were told: the in-app rows and the mail the SMTP server accepted."""

    def __init__(self, journey: Journey) -> None:
        self.app = journey.app
        self.sink = journey.mail

    def assert_told(self, username: str, kind: str, link: str, *mentions: str) -> None:
        """`username` has exactly one `kind` notification linking to `link`, and its e-mail (same
        Message-ID) was accepted once for their address; subject or body mention every one of `mentions`."""
        with self.app.app_context():
            user = db.session.scalar(select(User).where(User.username == username))
            rows = db.session.scalars(
                select(Notification).where(
                    Notification.recipient_id == user.id, Notification.kind == kind, Notification.link == link
                )
            ).all()
            assert len(rows) == 1, f"{username}: {len(rows)} {kind} notifications for {link}"
            notification = rows[0]
            assert notification.email_state is EmailState.SENT, notification.email_error
            message_id, address = notification.message_id, user.email
        mails = wait_for(
            lambda: [m for m in self.sink.received if m.message_id == message_id],
            5,
            f"the mail of {kind} to {username}",
        )
        assert len(mails) == 1 and mails[0].outcome == "accepted", mails
        mail = mails[0]
        assert mail.recipients == [address]
        text = f"{mail.subject}\n{mail.body}"
        for mention in mentions:
            assert mention in text, f"{mention!r} not in the mail {text!r}"
        assert link in mail.body  # the mail links to the object, like the centre does

    def mails_to(self, address: str) -> int:
        return sum(1 for m in self.sink.received if address in m.recipients)


def target_instrument(app: Flask) -> tuple[str, str]:
    """The dearest bookable instrument of 聊城大学 (the demo provider's institution)."""
    with app.app_context():
        instrument = db.session.scalar(
            select(Instrument)
            .join(Institution)
            .outerjoin(BookingPolicy, BookingPolicy.instrument_id == Instrument.id)
            .where(
                Institution.name == "聊城大学",
                Instrument.status == InstrumentStatus.NORMAL,
                Instrument.fee_per_hour_fen.is_not(None),
                BookingPolicy.instrument_id.is_(None) | BookingPolicy.accepts_slots,
            )
            .order_by(Instrument.fee_per_hour_fen.desc(), Instrument.code)
        )
        return instrument.code, instrument.name


def expected_subsidy(app: Flask, fee_fen: int, instrument_code: str) -> tuple[int, int]:
    """The subsidy of one service by the scheme's fund rates and conditions (each floored to the fen),
    far below every cap; and the scheme's four-eyes threshold."""
    with app.app_context():
        scheme = db.session.scalar(select(Scheme).where(Scheme.year == clock.local_today().year))
        host = db.session.scalar(select(Instrument).where(Instrument.code == instrument_code)).institution
        total = 0
        for fund in db.session.scalars(select(Fund).where(Fund.scheme_id == scheme.id)):
            if fund.condition == FundCondition.ALWAYS or (
                fund.condition == FundCondition.LOCAL_PROVIDER and host.is_local
            ):
                total += int((fee_fen * fund.rate).to_integral_value(ROUND_FLOOR))
        return total, scheme.four_eyes_threshold_fen


def test_the_life_of_a_subsidy(journey, browser, problems, demo_clock, screenshots, tmp_path):
    base, app = journey.url, journey.app
    told = Mailbox(journey)
    code, instrument_name = target_instrument(app)
    evidence = {}
    for label, name in (
        ("合同", "技术服务合同.pdf"),
        ("发票", "增值税发票.pdf"),
        ("付款凭证", "银行回单.pdf"),
    ):
        evidence[label] = tmp_path / name
        evidence[label].write_bytes(PDF)
    certificate = tmp_path / "入库登记证明.pdf"
    certificate.write_bytes(PDF)

    # --- A visitor finds the instrument in the catalogue and registers the enterprise. --------------
    company = open_session(browser, problems)
    company.goto(f"{base}/instruments/")
    company.get_by_label("关键词").fill(instrument_name)
    company.get_by_role("button", name="搜索", exact=True).click()
    company.wait_for_url(re.compile(r"q="))
    hosts = company.get_by_label("依托单位")
    hosts.select_option(hosts.locator("option", has_text=re.compile(r"^聊城大学 \(")).get_attribute("value"))
    company.get_by_role("button", name="应用筛选").click()
    company.wait_for_url(re.compile(r"institution="))
    expect(company.locator(f'a.instrument-link[href$="/instruments/{code}"]')).to_be_visible()
    company.screenshot(path=screenshots / "01-catalogue.png")

    company.get_by_role("link", name="企业注册").click()
    company.get_by_label("企业名称").fill(COMPANY)
    company.get_by_label("统一社会信用代码").fill(CREDIT_CODE)
    company.get_by_label("企业类型").select_option(label="科技型中小企业")
    company.get_by_label("所在区县").select_option("高新区")
    company.get_by_label("联系人").fill(CONTROLLER)
    company.get_by_label("手机号码").fill("13806350042")
    company.get_by_label("电子邮箱").fill(EMAIL)
    company.get_by_label("用户名").fill(USERNAME)
    company.get_by_label("密码", exact=True).fill("Ceshi-Lab-2026-q")
    company.get_by_label("确认密码").fill("Ceshi-Lab-2026-q")
    company.get_by_role("button", name="注册").click()
    # The same page whoever registers; the mail to the address typed has the activation link.
    company.locator("#registration-sent").wait_for()  # the answer stays at /register: wait for it
    [mail] = wait_for(
        lambda: [m for m in journey.mail.received if EMAIL in m.recipients], 10, "the registration mail"
    )
    link = re.search(r"https?://\S+/register/confirm/[A-Za-z0-9_-]+", mail.body).group(0)
    company.goto(link)
    company.get_by_role("button", name="激活我的账户").click()
    company.wait_for_url(re.compile(r"/login"))
    expect(company.get_by_text("账户已激活")).to_be_visible()
    company.get_by_label("用户名").fill(USERNAME)
    company.get_by_label("密码").fill("Ceshi-Lab-2026-q")
    company.get_by_role("button", name="登录").click()
    company.wait_for_url(re.compile(r"/instruments/"))

    # ... and asks the bureau to verify it as a tech SME.
    nav(company, "创新券")
    company.get_by_role("link", name="申请企业认证").click()
    company.get_by_label("企业类型").select_option(label="科技型中小企业")
    company.get_by_label("科技型中小企业入库编号").fill("202637150200004217")
    company.get_by_label("入库证明（PDF、JPEG 或 PNG）").set_input_files(str(certificate))
    company.get_by_label("实际控制人").fill(CONTROLLER)
    company.get_by_role("button", name="提交企业认证申请").click()
    expect(company.locator("#verification-card").get_by_text("等待科技局审核")).to_be_visible()

    # --- A reviewer verifies it. ---------------------------------------------------------------------
    reviewer = open_session(browser, problems)
    sign_in(reviewer, base, "reviewer")

    def from_queue(page, tab: str) -> None:
        nav(page, "审核台")
        page.locator("#queue-tabs").get_by_role("link", name=re.compile(tab)).click()
        page.locator("#queue tr", has_text=COMPANY).get_by_role("link").click()

    from_queue(reviewer, "企业认证")
    expect(reviewer.get_by_text(CREDIT_CODE)).to_be_visible()
    reviewer.get_by_role("button", name="认证通过").click()
    reviewer.wait_for_url(re.compile(r"/review/\?kind=verification"))
    company.reload()
    expect(company.locator("#verification-card").get_by_text("已认证")).to_be_visible()
    told.assert_told(USERNAME, "verification.verified", "/vouchers/", "企业认证已通过", COMPANY)
    assert reviewer.asked[-1].startswith("认证通过该企业")  # the decision asked first

    # --- The enterprise enters the account its subsidies go to; a reviewer checks and verifies it. -----
    company.locator("#bank-card").get_by_role("link", name="详情与变更").click()
    assert company.get_by_label("户名").input_value() == COMPANY  # the registered name, suggested
    company.get_by_label("开户行").fill(BANK)
    company.get_by_label("账号").fill(ACCOUNT)
    company.get_by_role("button", name="提交科技局核验账户").click()
    expect(company.locator("#bank-pending").get_by_text(ACCOUNT)).to_be_visible()
    told.assert_told(USERNAME, "bank_account.submitted", "/vouchers/bank-account", BANK, "尾号 1773")
    from_queue(reviewer, "银行账户")
    expect(reviewer.locator("#bank-compare").get_by_text(ACCOUNT)).to_be_visible()
    assert reviewer.locator("#name-mismatch").count() == 0
    reviewer.screenshot(path=screenshots / "10-bank-account.png")
    reviewer.get_by_role("button", name="账户核验通过").click()
    reviewer.wait_for_url(re.compile(r"/review/\?kind=bank_account"))
    assert reviewer.asked[-1].startswith("核验通过该账户")
    told.assert_told(USERNAME, "bank_account.verified", "/vouchers/bank-account", BANK, "1773")
    company.reload()
    expect(company.locator("#bank-current").get_by_text(ACCOUNT)).to_be_visible()

    # --- The enterprise books machine time next week. -------------------------------------------------
    company.goto(f"{base}/instruments/{code}")
    company.get_by_role("link", name="预约机时").click()
    company.get_by_role("link", name="下一周").click()
    company.locator("#week-grid a.stretched-cell").first.wait_for()
    company.screenshot(path=screenshots / "02-availability.png")
    company.locator("#week-grid a.stretched-cell").first.click()
    company.wait_for_url(re.compile(r"/book\?start="))
    ends = company.get_by_label("结束")
    ends.select_option(index=ends.locator("option").count() - 1)  # as long as the opening allows
    company.get_by_label("测试目的").fill("新型封装焊点的截面制备与失效分析（FIB 切割 + SEM 成像）")
    company.screenshot(path=screenshots / "03-booking-form.png")
    company.get_by_role("button", name="提交预约申请").click()
    company.wait_for_url(re.compile(r"/bookings/\d+$"))
    assert state_of(company, "#booking-state") == "待确认"
    booking_path = company.url.removeprefix(base)
    with app.app_context():
        booking = db.session.get(Booking, int(booking_path.rsplit("/", 1)[1]))
        booked_hours = Decimal((booking.ends_at - booking.starts_at).total_seconds()) / 3600
        booking_ends = booking.ends_at
    told.assert_told("provider", "booking.requested", booking_path, instrument_name, COMPANY)

    # --- The provider of 聊城大学 opens the request from the notification centre and confirms it. -----
    provider = open_session(browser, problems)
    sign_in(provider, base, "provider")
    open_from_centre(provider, base, "booking.requested", COMPANY)
    provider.wait_for_url(re.compile(re.escape(booking_path) + "$"))
    expect(provider.get_by_role("button", name="确认预约")).to_be_visible()
    provider.screenshot(path=screenshots / "04-provider-confirm.png")
    provider.get_by_role("button", name="确认预约").click()
    assert state_of(provider, "#booking-state") == "已确认"
    told.assert_told(USERNAME, "booking.confirmed", booking_path, instrument_name, "聊城大学")

    # --- The time is used; the provider records the service at the contract price, with evidence. ----
    demo_clock.set(booking_ends + timedelta(minutes=10))
    provider.reload()
    provider.get_by_label("实际使用机时").fill(str(booked_hours.normalize()))
    provider.get_by_label("实收费用（元）").fill(str(FEE_YUAN))
    provider.get_by_label("收费调整原因").fill("按技术服务合同计价：含测试方案设计与失效分析报告")
    provider.get_by_label("结果摘要").fill("完成 6 处焊点截面的 FIB 切割与 SEM 成像，发现界面 IMC 层开裂。")
    for label, path in evidence.items():
        provider.get_by_label(label, exact=True).set_input_files(str(path))
    provider.get_by_role("button", name="登记服务").click()
    assert state_of(provider, "#booking-state") == "已完成"
    assert provider.locator("#service-fee strong").inner_text() == yuan(FEE_YUAN * 100)
    assert provider.locator("#service-files li").count() == 3
    told.assert_told(USERNAME, "service.recorded", booking_path, instrument_name, yuan(FEE_YUAN * 100))

    # --- The enterprise sees it in its centre, opens it and rates the service. -------------------------
    open_from_centre(company, base, "service.recorded", instrument_name)
    company.wait_for_url(re.compile(re.escape(booking_path) + "$"))
    company.get_by_label("非常满意").check()
    company.get_by_role("button", name="确认服务并评价").click()
    assert state_of(company, "#service-rating").startswith("非常满意")

    # --- It applies for a voucher; above the threshold, two reviewers approve it. ---------------------
    nav(company, "创新券")
    company.get_by_role("link", name="申请创新券").click()
    company.get_by_label("申请创新券额度（元）").fill(str(VOUCHER_YUAN))
    company.get_by_label("计划：拟在哪些仪器上测试什么内容，以及原因").fill(
        "在聊城大学双束电镜上完成新型封装焊点的失效分析，改进回流焊工艺。"
    )
    company.get_by_role("button", name="提交创新券申请").click()
    assert state_of(company, "#application-state") == "已提交"

    from_queue(reviewer, "创新券申请")
    reviewer.get_by_role("button", name="批准").click()
    assert state_of(reviewer, "#application-state") == "待复核"
    application_path = urlsplit(reviewer.url).path
    application_id = application_path.rsplit("/", 1)[1]
    told.assert_told(
        "reviewer2",
        "voucher_application.second_review",
        application_path,
        f"#{application_id}",
        yuan(VOUCHER_YUAN * 100),
    )

    reviewer2 = open_session(browser, problems)
    sign_in(reviewer2, base, "reviewer2")
    from_queue(reviewer2, "创新券申请")
    expect(reviewer2.get_by_text("已初审通过")).to_be_visible()
    reviewer2.screenshot(path=screenshots / "05-voucher-review.png")
    reviewer2.get_by_role("button", name="批准").click()
    assert state_of(reviewer2, "#application-state") == "已批准"
    company.reload()
    assert state_of(company, "#voucher-balance") == yuan(VOUCHER_YUAN * 100)
    voucher_code = company.locator(".voucher-card strong.font-monospace").inner_text()
    with app.app_context():
        voucher_link = (
            f"/vouchers/voucher/{db.session.scalar(select(Voucher.id).where(Voucher.code == voucher_code))}"
        )
    told.assert_told(USERNAME, "application.approved", voucher_link, voucher_code, yuan(VOUCHER_YUAN * 100))

    # --- The enterprise claims the subsidy for the service. --------------------------------------------
    subsidy_fen, threshold_fen = expected_subsidy(app, FEE_YUAN * 100, code)
    assert subsidy_fen > threshold_fen  # so the rules need two reviewers
    company.get_by_role("link", name="新建申领").click()
    company.locator("input[name=records]").check()
    company.get_by_role("button", name="计算补贴").click()
    assert state_of(company, "#subsidy-total") == yuan(subsidy_fen)
    assert company.locator("#checks .check-failed").count() == 0
    company.get_by_role("button", name="保存为草稿").click()
    company.get_by_role("button", name="提交科技局").click()
    assert state_of(company, "#claim-state") == "已提交"
    claim_path = company.url.removeprefix(base)
    claim_id = int(claim_path.rsplit("/", 1)[1])

    # The first reviewer approves; the second is told, in the centre and by mail, and confirms.
    from_queue(reviewer, "补贴申领")
    expect(reviewer.get_by_text("金额超过双人复核限额")).to_be_visible()
    reviewer.get_by_role("button", name="批准").click()
    assert state_of(reviewer, "#claim-state") == "待复核"
    told.assert_told("reviewer2", "claim.second_review", claim_path, f"#{claim_id}", yuan(subsidy_fen))
    assert told.mails_to("reviewer@example.cn") == 0  # not told of its own approval

    open_from_centre(reviewer2, base, "claim.second_review", f"#{claim_id}")
    reviewer2.wait_for_url(re.compile(re.escape(claim_path) + "$"))
    expect(reviewer2.get_by_text("已初审通过")).to_be_visible()
    reviewer2.screenshot(path=screenshots / "06-claim.png")
    reviewer2.get_by_role("button", name="批准").click()
    assert state_of(reviewer2, "#claim-state") == "已批准，公示中"
    with app.app_context():
        notice_ends_on = str(db.session.get(Claim, claim_id).notice_ends_on)
    told.assert_told(USERNAME, "claim.approved", claim_path, yuan(subsidy_fen), notice_ends_on)

    # Anyone can read the public notice.
    visitor = open_session(browser, problems)
    visitor.goto(f"{base}/vouchers/notices")
    expect(visitor.locator("#notices tr", has_text=COMPANY).get_by_text(yuan(subsidy_fen))).to_be_visible()
    visitor.context.close()

    # --- The notice period passes; the beat's task makes the claim payable. ----------------------------
    demo_clock.advance(days=8)
    with app.app_context():
        ending = app.extensions["celery"].tasks[BEAT_SCHEDULE["end-public-notice"]["task"]]
        # Run as the worker would, here (an eager .get() races the live server thread's eager tasks).
        assert ending() >= 1
    reviewer.goto(f"{base}{claim_path}")
    assert state_of(reviewer, "#claim-state") == "待兑付"
    told.assert_told(USERNAME, "claim.payable", claim_path, f"#{claim_id}", yuan(subsidy_fen))

    # --- Finance builds the month's batch, exports it for the bank and marks it paid. ------------------
    finance = open_session(browser, problems)
    sign_in(finance, base, "finance")
    nav(finance, "财务")
    finance.get_by_role("link", name="兑付批次").click()
    finance.get_by_role("button", name="生成批次").click()
    finance.wait_for_url(re.compile(r"/finance/batches/\d+$"))
    assert state_of(finance, "#batch-state") == "草稿"
    row = finance.locator("#payments tr", has_text=COMPANY)
    cells = [row.locator("td").nth(n).inner_text() for n in range(7)]
    assert cells[1:6] == [CREDIT_CODE, COMPANY, BANK, ACCOUNT, f"{fen_to_yuan(subsidy_fen):.2f}"]
    assert f"#{claim_id}" in cells[6]

    with finance.expect_download() as download:
        finance.get_by_role("button", name="导出给银行（CSV）").click()
    bank_file = Path(download.value.path()).read_text(encoding="utf-8-sig")
    digits = ACCOUNT.replace(" ", "")
    # Codes end in a tab, so that a spreadsheet keeps them as text (every digit, the leading zero).
    assert (
        f"{COMPANY},{CREDIT_CODE}\t,{COMPANY},{BANK},{digits}\t,{fen_to_yuan(subsidy_fen):.2f}" in bank_file
    )
    with finance.expect_download() as download:
        finance.get_by_role("button", name="导出给银行（XLSX）").click()
    sheet = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes())).active
    number = next(r[4] for r in sheet.iter_rows(min_row=2) if r[0].value == COMPANY)
    assert (number.value, number.data_type, number.number_format) == (digits, "s", "@")
    finance.reload()
    assert state_of(finance, "#batch-state") == "已导出给银行"
    finance.get_by_label("兑付银行流水号").fill(BANK_REFERENCE)
    finance.get_by_role("button", name="标记批次已兑付").click()
    assert state_of(finance, "#batch-state") == "已兑付"
    assert finance.asked[-1].startswith("将本批次的全部申领标记为已兑付")
    finance.screenshot(path=screenshots / "07-finance-batch.png")
    told.assert_told(USERNAME, "claim.paid", claim_path, yuan(subsidy_fen), BANK_REFERENCE)

    nav(finance, "数据看板")
    finance.locator("#chart-burn svg").wait_for()
    finance.screenshot(path=screenshots / "08-dashboard.png")

    # --- The enterprise's view at the end: the claim is paid, every step is in its centre. -------------
    company.goto(f"{base}{claim_path}")
    assert state_of(company, "#claim-state") == "已兑付"
    company.goto(f"{base}/notifications/")
    kinds = company.locator("#notifications li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert sorted(kinds) == sorted(
        [
            "verification.verified",
            "bank_account.submitted",
            "bank_account.verified",
            "booking.confirmed",
            "service.recorded",
            "application.approved",
            "claim.approved",
            "claim.payable",
            "claim.paid",
        ]
    )
    # The one opened from the centre is read; the rest wait, counted in the navigation bar.
    assert state_of(company, "#unread-count") == str(len(kinds) - 1)
    company.screenshot(path=screenshots / "09-notifications.png")
    assert told.mails_to(EMAIL) == len(kinds) + 1  # and the registration's activation mail (no in-app row)
    with app.app_context():
        record = db.session.scalar(select(ServiceRecord).where(ServiceRecord.booking_id == booking.id))
        assert record.claim_id == claim_id and record.rating == 5

    # No mail went out twice, and no page had an error.
    assert all(count == 1 for count in journey.mail.accepted().values())
    assert problems.seen == []
    for page in (company, reviewer, reviewer2, provider, finance):
        page.context.close()
