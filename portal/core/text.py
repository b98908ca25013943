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
