"""Cross-cutting pieces every domain package uses: money, time, text, permissions, audit, errors."""
