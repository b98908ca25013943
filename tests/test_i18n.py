"""Every interface text has a Chinese translation (Chinese is the default language)."""

from __future__ import annotations

import os
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

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
