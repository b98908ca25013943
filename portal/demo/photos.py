"""Demo photos: drawn with Pillow when the demo loads (no image files in the repository), then uploaded
through the same checks and re-encoding as a provider's photo."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from portal.accounts.models import Institution, User
from portal.catalog import editing
from portal.catalog.models import Instrument
from portal.core.permissions import Role
from portal.extensions import db

# The hosts whose instruments have photos (the two published provider logins), how many of their
# instruments, and how many of those get a second photo.
HOSTS = {"聊城大学": 8, "鲁西化工集团股份有限公司": 4}
WITH_TWO = 2
SIZE = (960, 720)


def draw_instrument(rng: random.Random, label: str, size: tuple[int, int] = SIZE) -> bytes:
    """A JPEG of a stylised bench instrument: a cabinet, a screen, a sample door and knobs."""
    width, height = size
    hue = rng.randrange(360)
    image = Image.new("RGB", size, f"hsl({hue}, 25%, 88%)")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 0.78, width, height), fill=f"hsl({hue}, 15%, 70%)")  # the bench
    left, top = width * rng.uniform(0.12, 0.22), height * rng.uniform(0.15, 0.3)
    right, bottom = width - left, height * 0.8
    draw.rounded_rectangle((left, top, right, bottom), radius=24, fill="#f4f5f7", outline="#7d8691", width=4)
    screen = (left + 40, top + 40, left + (right - left) * 0.45, top + (bottom - top) * 0.45)
    draw.rectangle(screen, fill=f"hsl({(hue + 180) % 360}, 45%, 30%)")
    steps = 30  # a spectrum on the screen: a flat baseline with a few peaks
    trace = [
        (
            screen[0] + 12 + n * (screen[2] - screen[0] - 24) / steps,
            screen[3] - 12 - rng.random() ** 5 * (screen[3] - screen[1] - 24),
        )
        for n in range(steps + 1)
    ]
    draw.line(trace, fill="#9fe870", width=3)
    door = (left + (right - left) * 0.55, top + 40, right - 40, bottom - 40)
    draw.rounded_rectangle(door, radius=12, fill="#dfe3e8", outline="#7d8691", width=3)
    for n in range(rng.randint(2, 4)):
        x = left + 60 + n * 70
        draw.ellipse((x, bottom - 90, x + 40, bottom - 50), fill=f"hsl({hue}, 60%, 45%)")
    font = ImageFont.load_default(size=36)
    draw.text((left + 40, bottom - 40 - 36 * 2.6), label, fill="#39424e", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def load_photos(rng: random.Random) -> int:
    """Photos on the first instruments of the demo's provider hosts; returns how many were added."""
    added = 0
    for host, count in HOSTS.items():
        institution_id = db.session.scalar(select(Institution.id).where(Institution.name == host))
        provider = db.session.execute(
            select(User)
            .where(User.institution_id == institution_id, User.role == Role.PROVIDER)
            .order_by(User.id)
            .limit(1)
        ).scalar_one()
        instruments = db.session.scalars(
            select(Instrument)
            .where(Instrument.institution_id == institution_id)
            .order_by(Instrument.code)
            .limit(count)
        ).all()
        for n, (code, name) in enumerate([(i.code, i.name) for i in instruments]):
            views = ("正面", "样品仓") if n < WITH_TWO else ("正面",)
            for view in views:
                photo = draw_instrument(rng, code)
                editing.add_photo(provider, code, io.BytesIO(photo), f"{name}({view})")
                added += 1
    return added
