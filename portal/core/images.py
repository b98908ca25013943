"""Photos from the outside world: recognised by content, sized before decoding, decoded and re-encoded.

A file is accepted only when its first bytes say JPEG, PNG or WebP AND Pillow decodes it as that
format. Its pixel count is read from the header and checked before the pixels are decoded, so a small
file that unpacks to gigabytes (a decompression bomb) is refused without being unpacked. What is kept
is a new encoding of the decoded pixels, turned upright by its EXIF orientation: no EXIF (camera,
GPS position), no comments, no trailing bytes of another format (a polyglot) survive.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import IO

from flask_babel import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from portal.core.errors import ValidationFailed

# What each accepted format starts with, by Pillow's name for it (a WebP file is a RIFF container:
# "RIFF", four bytes of size, then "WEBP"; see detect_format).
SIGNATURES = {"JPEG": b"\xff\xd8\xff", "PNG": b"\x89PNG\r\n\x1a\n"}
DISPLAY_SIDE = 1600  # the longest side of the picture a detail page shows
THUMBNAIL_SIZE = (320, 240)  # lists show a 4:3 crop; twice the size it is drawn at, for sharp screens
MIN_SIDE = 100
JPEG_QUALITY = 85


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


@dataclass(frozen=True)
class Photo:
    """A checked photo, re-encoded: the picture to show and its thumbnail."""

    display: EncodedImage
    thumbnail: EncodedImage


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(message, {"file": message})


def detect_format(head: bytes) -> str | None:
    """Pillow's name of the accepted format these first bytes announce, else None."""
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for name, magic in SIGNATURES.items() if head.startswith(magic)), None)


def _open(data: bytes, expected: str, max_pixels: int) -> Image.Image:
    """Decode the image the bytes announce, having checked its size from the header first."""
    unreadable = _("The file cannot be read as a JPEG, PNG or WebP image.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[expected])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _refuse(_("The image has too many pixels.")) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise _refuse(unreadable) from None
        width, height = image.size
        if width * height > max_pixels:
            raise _refuse(
                _(
                    "The image has %(pixels)s megapixels; at most %(limit)s are accepted.",
                    pixels=f"{width * height / 1e6:.1f}",
                    limit=f"{max_pixels / 1e6:g}",
                )
            )
        if min(width, height) < MIN_SIDE:
            raise _refuse(_("The image is too small: at least %(n)d pixels on each side.", n=MIN_SIDE))
        if expected == "JPEG":
            image.draft("RGB", (DISPLAY_SIDE, DISPLAY_SIDE))  # decode big JPEGs at a fraction of the size
        try:
            image.load()  # the first frame only: an animation is kept as its first picture
        except Exception:  # any decoder failure means the same to the uploader
            raise _refuse(unreadable) from None
    return image


def _encode(image: Image.Image) -> EncodedImage:
    # Pixels only: Pillow would write some of the source's info (a JPEG comment) into the new file.
    image = Image.frombytes(image.mode, image.size, image.tobytes())
    buffer = io.BytesIO()
    if image.mode == "RGBA":
        image.save(buffer, "PNG", optimize=True)
        content_type, extension = "image/png", ".png"
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        content_type, extension = "image/jpeg", ".jpg"
    return EncodedImage(buffer.getvalue(), content_type, extension, image.width, image.height)


def process_photo(stream: IO[bytes], *, max_bytes: int, max_pixels: int) -> Photo:
    """Check an uploaded photo and re-encode it; raises ValidationFailed saying what is wrong."""
    data = stream.read(max_bytes + 1)
    if not data:
        raise _refuse(_("The file is empty."))
    if len(data) > max_bytes:
        raise _refuse(_("The file is larger than %(mb)d MB.", mb=max_bytes // (1024 * 1024)))
    expected = detect_format(data[:16])
    if expected is None:
        raise _refuse(_("Only JPEG, PNG or WebP photos are accepted, and this file is none of them."))
    image = _open(data, expected, max_pixels)
    image = ImageOps.exif_transpose(image)
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    try:
        image = image.convert("RGBA" if transparent else "RGB")
    except (OSError, ValueError):
        raise _refuse(_("The file cannot be read as a JPEG, PNG or WebP image.")) from None
    display = image.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    thumbnail = ImageOps.fit(image, THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    return Photo(display=_encode(display), thumbnail=_encode(thumbnail))
