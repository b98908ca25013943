"""The shapes of the demo's static material: a manufacturer, an instrument kind, a host."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Make:
    """A real manufacturer of one instrument kind and the models it sells for it."""

    manufacturer: str
    country: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class Kind:
    """One kind of networked instrument, with plausible values, fees and texts."""

    category_code: str
    name: str
    name_en: str
    makes: tuple[Make, ...]
    value_wan: tuple[int, int]
    fee_per_hour_yuan: tuple[int, int] | None
    fee_per_sample_yuan: tuple[int, int] | None
    specs: str
    functions: str
    service: str


@dataclass(frozen=True)
class Host:
    """A host institution (依托单位) of the Liaocheng network."""

    name: str
    short: str
    kind: str
    county: str
    address: str
    weight: int
    focus: tuple[str, ...]
