"""The deterministic demo network (`flask demo load`), also used to make benchmark data."""

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - published demo credential, demo data only
DEFAULT_INSTRUMENTS = 1202
DEFAULT_ENTERPRISE_USERS = 751
DEFAULT_BOOKINGS = 150_000
DEFAULT_VOUCHERS = 40
