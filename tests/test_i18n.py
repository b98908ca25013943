"""Every interface text has a Chinese translation (Chinese is the default language)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from tests.conftest import make_app

ROOT = Path(__file__).resolve().parent.parent


def test_every_message_in_the_code_is_translated_into_chinese(tmp_path):
    pot = tmp_path / "messages.pot"
    here = Path.cwd()
    os.chdir(ROOT)
    try:
        CommandLineInterface().run(
            [
                "pybabel",
                "-q",
                "extract",
                "-F",
                "babel.cfg",
                "-k",
                "_l",
                "-k",
                "lazy_gettext",
                "-o",
                str(pot),
                ".",
            ]
        )
    finally:
        os.chdir(here)
    with pot.open("rb") as handle:
        wanted = {m.id for m in read_po(handle) if m.id}
    with (ROOT / "portal/translations/zh/LC_MESSAGES/messages.po").open("rb") as handle:
        catalogue = read_po(handle)
    assert not catalogue.fuzzy, "a fuzzy header makes pybabel skip the whole catalogue"
    translated = {
        m.id
        for m in catalogue
        if m.id and m.string and not m.fuzzy and all(m.string if isinstance(m.string, tuple) else [m.string])
    }
    missing = sorted(str(m) for m in wanted - translated)
    assert missing == [], f"untranslated: {missing[:20]}"


@pytest.mark.parametrize("filter_name", ["zh", "county", "country", "action_label", "object_label"])
def test_a_language_filter_on_a_constant_follows_the_page_not_the_first_visitor(filter_name):
    """Jinja folds plain filters applied to constants into the compiled template. A template first
    compiled for a Chinese page then kept its Chinese markup for English visitors: `'仪器编码'|zh`
    lost the lang="zh" that screen readers need (found by the English walk once compiled
    templates were kept between tests)."""
    app = make_app("sqlite://")
    source = "{{ '仪器编码'|" + filter_name + " }}"
    expected = {}
    for language in ("zh", "en"):
        with app.test_request_context(headers={"Cookie": f"lang={language}"}):
            expected[language] = str(app.jinja_env.from_string(source).render())
    with app.test_request_context(headers={"Cookie": "lang=zh"}):
        compiled_for_chinese = app.jinja_env.from_string(source)
    with app.test_request_context(headers={"Cookie": "lang=en"}):
        assert str(compiled_for_chinese.render()) == expected["en"]
    if filter_name == "zh":
        assert expected == {"zh": "仪器编码", "en": '<span lang="zh">仪器编码</span>'}
