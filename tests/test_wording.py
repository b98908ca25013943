"""One word for one thing: 兑付 (paying out), 企业认证 (verification), 仪器名称 and 方案名称 (not 姓名)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from portal.core.permissions import Role
from tests.factories import login

PO = Path(__file__).resolve().parent.parent / "portal/translations/zh/LC_MESSAGES/messages.po"


def catalogue() -> dict[str, str]:
    with PO.open("rb") as handle:
        return {
            (m.id if isinstance(m.id, str) else m.id[0]): (
                m.string if isinstance(m.string, str) else m.string[0]
            )
            for m in read_po(handle)
            if m.id
        }


# A bank account is checked too, but that is another thing with a word of its own: 账户核验. A text that
# says 核验 says of what: the account (账户, 账号, 户名, 开户行).
BANK_ACCOUNT = re.compile(r"账户|账号|户名|开户行")


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("拨付", "兑付"),
        ("支付", "兑付"),
        ("付款流水", "兑付银行流水号"),
        ("认定", "企业认证"),
        ("核验", "企业认证"),
        ("审核认证", "企业认证"),
    ],
)
def test_no_translation_uses_a_second_word_for_the_same_thing(wrong, right):
    offending = {
        msgid: text
        for msgid, text in catalogue().items()
        if wrong in text and not (wrong == "核验" and BANK_ACCOUNT.search(text))
    }
    assert offending == {}, f"say {right}, not {wrong}"


def test_verification_is_qiye_renzheng():
    texts = catalogue()
    assert texts["Verification"] == "企业认证" and texts["Awaiting verification"] == "待企业认证"
    verification = {
        m: t
        for m, t in texts.items()
        if re.search(r"\bverif", m, re.I) and "认证" not in t and not ("核验" in t and BANK_ACCOUNT.search(t))
    }
    assert verification == {}


def test_a_bank_account_is_checked_by_heyan():
    texts = catalogue()
    bank = {
        m: t for m, t in texts.items() if re.search(r"bank account", m, re.I) and re.search(r"verif", m, re.I)
    }
    assert bank
    assert {m: t for m, t in bank.items() if "核验" not in t} == {}


def test_paying_out_subsidies_is_always_duifu():
    # The enterprise's own payment to the provider (its receipt, its share of the fee, the voucher used
    # at payment, issue 21) is not a payout.
    own_payment = re.compile(r"receipt|yours to pay|Payee|share|at payment|Paid by the", re.I)
    payout = re.compile(r"\b(paid|payable|payment|disbursement)\b", re.I)
    missing = {
        msgid: text
        for msgid, text in catalogue().items()
        if payout.search(msgid) and not own_payment.search(msgid) and "兑付" not in text
    }
    assert missing == {}


def test_only_a_persons_name_is_xingming():
    assert [
        msgid for msgid, text in catalogue().items() if "姓名" in text and "name" not in msgid.lower()
    ] == []
    assert catalogue()["Instrument name"] == "仪器名称"
    assert catalogue()["Scheme name"] == "方案名称"


def test_the_pages_name_instruments_and_schemes_as_such(client, make_user):
    page = client.get("/instruments/").get_data(as_text=True)
    assert re.search(r'<option[^>]*value="name"[^>]*>仪器名称</option>', page)
    login(client, make_user(Role.ADMIN).username)
    scheme = client.get("/review/scheme").get_data(as_text=True)
    assert re.search(r'<label[^>]*for="name"[^>]*>方案名称</label>', scheme)
    assert "姓名" not in scheme


def test_english_says_verification_and_paid_consistently():
    ids = list(catalogue())
    assert not [m for m in ids if re.search(r"\b(vetting|accreditation|certified enterprise)\b", m, re.I)]
    assert not [m for m in ids if re.search(r"registration was rejected", m)]
