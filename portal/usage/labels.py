"""The printable label of an instrument: a QR code of its short URL (/i/<code>), as SVG and as PDF.

segno makes the QR code. The PDF is written here by hand (one page, no library): the modules are
filled rectangles, the Latin text is Helvetica and the Chinese name STSong-Light, the Adobe-GB1 font
every PDF reader supplies itself, so nothing is embedded and the label stays a few kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

import segno

# The label's size in PDF points (70 mm × 95 mm), the QR code's side and its margin.
WIDTH, HEIGHT = 198, 270
QR_SIDE, MARGIN = 150, 24
NAME_CHARS = 14  # Chinese characters per line of the name (two lines at most)


@dataclass(frozen=True)
class Label:
    code: str
    name: str
    url: str

    def matrix(self) -> list[list[bool]]:
        qr = segno.make(self.url, error="m", micro=False)
        return [[bool(cell) for cell in row] for row in qr.matrix]

    def name_lines(self) -> list[str]:
        return [self.name[i : i + NAME_CHARS] for i in range(0, len(self.name), NAME_CHARS)][:2]


def label_svg(label: Label) -> str:
    """The label as an SVG document (the text in whatever fonts the printing browser has)."""
    qr = segno.make(label.url, error="m", micro=False)
    side = qr.symbol_size(border=2)[0]
    scale = QR_SIDE / side
    lines = [(16, escape(line)) for line in label.name_lines()] + [
        (13, escape(label.code)),
        (12, "扫码签到 · Scan to check in"),
        (9, escape(label.url)),
    ]
    texts, y = [], MARGIN + QR_SIDE + 22
    for size, text in lines:
        texts.append(
            f'<text x="{WIDTH / 2}" y="{y}" font-size="{size}" text-anchor="middle" '
            f'font-family="sans-serif">{text}</text>'
        )
        y += size + 6
    body = qr.svg_inline(scale=scale, border=2, omitsize=False)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="70mm" height="95mm" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff" stroke="#000" stroke-width="0.5"/>'
        f'<g transform="translate({(WIDTH - QR_SIDE) / 2},{MARGIN})">{body}</g>' + "".join(texts) + "</svg>"
    )


def _latin(text: str) -> str:
    """A PDF string of Helvetica text (WinAnsi): brackets and backslashes escaped, the rest as '?'."""
    raw = text.encode("cp1252", "replace").decode("cp1252")
    return "(" + raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _chinese(text: str) -> str:
    """A PDF hex string for STSong-Light with UniGB-UCS2-H: UTF-16BE of characters of the BMP."""
    return "<" + "".join(f"{ord(c):04X}" for c in text if ord(c) <= 0xFFFF) + ">"


def _contents(label: Label) -> bytes:
    matrix = label.matrix()
    module = QR_SIDE / (len(matrix) + 4)
    left, top = (WIDTH - QR_SIDE) / 2 + 2 * module, HEIGHT - MARGIN - 2 * module
    ops = ["0 g"]
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                ops.append(
                    f"{left + c * module:.2f} {top - (r + 1) * module:.2f} {module:.2f} {module:.2f} re"
                )
    ops.append("f")
    y = HEIGHT - MARGIN - QR_SIDE - 20
    for line in label.name_lines():
        ops.append(f"BT /F2 13 Tf {MARGIN} {y} Td {_chinese(line)} Tj ET")
        y -= 17
    ops.append(f"BT /F1 12 Tf {MARGIN} {y} Td {_latin(label.code)} Tj ET")
    ops.append(f"BT /F2 10 Tf {MARGIN} {y - 16} Td {_chinese('扫码签到')} Tj ET")
    ops.append(f"BT /F1 10 Tf {MARGIN + 44} {y - 16} Td {_latin('Scan to check in')} Tj ET")
    ops.append(f"BT /F1 7 Tf {MARGIN} {y - 30} Td {_latin(label.url)} Tj ET")
    return "\n".join(ops).encode("ascii")


def label_pdf(label: Label) -> bytes:
    """The label as a one-page PDF."""
    contents = _contents(label)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {WIDTH} {HEIGHT}] "
        "/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H "
        b"/DescendantFonts [7 0 R] >>",
        b"<< /Length %d >>\nstream\n" % len(contents) + contents + b"\nendstream",
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 4 >> /FontDescriptor 8 0 R >>",
        b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] "
        b"/ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 80 >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
