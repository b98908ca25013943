"""Small PDFs for tests: well-formed ones (uploads refuse PDFs that cannot be read) and hostile ones."""

from __future__ import annotations


def build_pdf(*objects: bytes, root: int = 1, xref: bool = True, unlisted: bytes = b"") -> bytes:
    """A PDF whose objects are numbered from 1 in order, with a correct cross-reference table.

    `unlisted` (whole `n 0 obj … endobj` text) goes after them, left out of the table.
    """
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    out += unlisted
    start = len(out)
    if xref:
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer<</Size %d/Root %d 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, start)
    return out


def minimal_pdf(text: bytes = b"") -> bytes:
    """A document with no pages; `text` (any bytes) goes into an unused stream, to give the file a body."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Count 0/Kids[]>>"]
    if text:
        objects.append(b"<</Length %d>>\nstream\n%s\nendstream" % (len(text), text))
    return build_pdf(*objects)
