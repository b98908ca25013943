"""Text normalisation and the n-grams that make Chinese keyword search indexable."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SPACE = re.compile(r"\s+")
# C0 controls but tab, LF and CR (PostgreSQL refuses NUL, XML the rest), and unpaired surrogates
# (a JSON "\\ud800" escape; UTF-8 cannot encode it).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def strip_control(text: str) -> str:
    """Text without the characters no database column or spreadsheet cell can hold."""
    return _CONTROL.sub("", text)


def normalize(text: str | None) -> str:
    """NFKC (full-width to half-width), case-folded, whitespace collapsed."""
    if not text:
        return ""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def grams(fields: Iterable[str | None]) -> list[str]:
    """Every single character and every adjacent pair inside each field, sorted and unique.

    Chinese has no spaces, and two-character words (质谱, 电镜) are the commonest queries, which a
    trigram index cannot serve. Indexing unigrams and bigrams lets any keyword of one character use
    the unigram and any longer keyword require all its bigrams; a LIKE recheck then confirms order.
    """
    out: set[str] = set()
    for field in fields:
        for word in normalize(field).split(" "):
            out.update(word)
            out.update(word[i : i + 2] for i in range(len(word) - 1))
    return sorted(out)


def query_grams(term: str) -> list[str]:
    """The grams a row must contain to possibly contain `term` (already normalised, no spaces)."""
    if len(term) == 1:
        return [term]
    return sorted({term[i : i + 2] for i in range(len(term) - 1)})


def like_escape(term: str) -> str:
    """Escape LIKE wildcards so user input matches literally (use with escape='\\')."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def pinyin_forms(text: str | None) -> list[str]:
    """The full pinyin and the initials of the Chinese characters in `text` ([] when it has none).

    质谱仪 gives ["zhipuyi", "zpy"]: what people type on a keyboard without switching to a Chinese
    input method. Other characters are left out, so a hyphen or a model number inside a name does not
    split a name's pinyin. pypinyin picks each character's reading from its phrase dictionary.
    """
    if not text or not _HAN.search(text):
        return []
    # Imported here: its dictionaries take a moment to load, and only indexing needs them.
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text, errors="ignore")
    initials = lazy_pinyin(text, style=Style.FIRST_LETTER, errors="ignore")
    return [normalize("".join(syllables)), normalize("".join(initials))]


_HAN = re.compile(r"[\u3400-\u9fff]")


def is_pinyin_like(term: str) -> bool:
    """Whether a search term could be pinyin or initials: latin letters only."""
    return term.isascii() and term.isalpha()
