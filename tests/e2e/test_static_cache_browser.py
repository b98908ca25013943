"""In a real browser: a page viewed again asks the server for none of its static files."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

STATIC_PREFIXES = ("/static/", "/bootstrap/static/")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_repeat_page_view_requests_no_static_file(app, served, page):
    """Counted at the server: Chromium's own events also report answers it took from its cache."""
    asked: list[str] = []
    inner = app.wsgi_app

    def counting(environ, start_response):
        if environ["PATH_INFO"].startswith(STATIC_PREFIXES):
            asked.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    app.wsgi_app = counting
    page.goto(f"{served}/instruments/")
    page.wait_for_load_state("networkidle")
    first = list(asked)
    assert {"css", "js"} <= {path.rsplit(".", 1)[-1] for path in first}, first

    asked.clear()
    page.goto(f"{served}/login")  # another page with the same files
    page.goto(f"{served}/instruments/")  # the same page again
    page.wait_for_load_state("networkidle")
    assert asked == []
    # The files were used, not merely skipped: the styles apply (Bootstrap's container is centred).
    assert page.locator("body").evaluate("b => getComputedStyle(b).margin") == "0px"
