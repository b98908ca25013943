"""Static material for the deterministic Liaocheng demo network: hosts, instrument kinds and names.

The instrument kinds are kept in one module per group of national categories; KINDS joins them in
category order, which the seeded demo relies on (the same seed gives the same network).
"""

from __future__ import annotations

from portal.demo.data import analysis, detection, measurement, process
from portal.demo.data.hosts import HOSTS
from portal.demo.data.names import (
    COMPANY_INDUSTRIES,
    COMPANY_PREFIXES,
    COMPANY_SUFFIXES,
    GIVEN_NAMES,
    SURNAMES,
    person_name,
)
from portal.demo.data.shapes import Host, Kind, Make

KINDS: tuple[Kind, ...] = analysis.KINDS + measurement.KINDS + detection.KINDS + process.KINDS

__all__ = [
    "COMPANY_INDUSTRIES",
    "COMPANY_PREFIXES",
    "COMPANY_SUFFIXES",
    "GIVEN_NAMES",
    "HOSTS",
    "KINDS",
    "SURNAMES",
    "Host",
    "Kind",
    "Make",
    "person_name",
]
