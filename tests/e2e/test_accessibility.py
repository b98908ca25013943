"""axe-core (WCAG 2.1 A and AA) finds nothing on any page type, for any role, in either language.

One browser for the module, one context per role and language, every page of tests/e2e/pages.py
that the role sees (in English each page type once, and each role's navigation bar: `walked`).
axe-core comes from the pinned pip package axe-playwright-python (it bundles axe.min.js); only its
script is used, run with our own options. Colour contrast, which the two languages share, is
checked in the Chinese walk, once per page type (LANGUAGE_NEUTRAL_RULES, `contrast_checked`)."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from playwright.sync_api import expect

from tests.e2e.pages import (
    ADMIN,
    ANONYMOUS,
    ENTERPRISE,
    LANGUAGES,
    REVIEWER,
    ROLES,
    PageType,
    open_page_type,
    page_values,
    pages_for,
    sign_in,
)

pytestmark = pytest.mark.e2e

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
# Colour contrast is a property of the style sheet and the page's structure, which both languages
# and every role share, and it is four fifths of axe's time on a page (nine of the ten seconds on
# the new-claim page's 368 services). The Chinese walk checks it once per page type, on the first
# role's walk that sees the page, and each role's navigation bar; the other walks run every other
# rule: names, labels, `lang`, structure, the ones the words and a role's own buttons can change.
LANGUAGE_NEUTRAL_RULES = {"color-contrast": {"enabled": False}}
MAX_NODES = 8  # failing elements shown per rule and page


def axe_source() -> str:
    return files("axe_playwright_python").joinpath("axe.min.js").read_text(encoding="utf-8")


def axe_violations(page, source: str, *, contrast: bool = True) -> list[dict]:
    """axe-core's violations on the page as it is now (the script is evaluated, not injected as a
    <script>, so the portal's Content-Security-Policy stays as it is)."""
    page.evaluate(source)
    options = AXE_OPTIONS if contrast else {**AXE_OPTIONS, "rules": LANGUAGE_NEUTRAL_RULES}
    return page.evaluate("options => axe.run(document, options).then(r => r.violations)", options)


def describe(page_name: str, url: str, violations: list[dict]) -> str:
    """A readable account: one block per rule, each failing element with axe's own explanation."""
    lines = [f"{page_name}  {url}"]
    for violation in violations:
        lines.append(f"  [{violation['impact']}] {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:MAX_NODES]:
            target = " ".join(str(part) for part in node["target"])
            summary = " / ".join(
                line.strip() for line in node["failureSummary"].splitlines()[1:] if line.strip()
            )
            lines.append(f"      {target}  — {summary[:300]}")
        if len(violation["nodes"]) > MAX_NODES:
            lines.append(f"      … and {len(violation['nodes']) - MAX_NODES} more")
    return "\n".join(lines)


# What axe-core does not look for, checked on every page of the walk as well.
DOM_CHECKS = """() => {
  const problems = [];
  for (const a of document.querySelectorAll('a[href]')) {
    const name = (a.getAttribute('aria-label') || a.textContent).trim();
    if (/^#\\d+$/.test(name)) problems.push('a link named only ' + name);
  }
  for (const el of document.querySelectorAll('.pagination .disabled a, .pagination .disabled [tabindex]')) {
    problems.push('a focusable disabled pagination item: ' + el.textContent.trim());
  }
  for (const el of document.querySelectorAll('.is-invalid')) {
    const ids = (el.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
    if (el.getAttribute('aria-invalid') !== 'true' || !ids.some(id => document.getElementById(id)))
      problems.push('a field in error not tied to its message: ' + (el.id || el.name));
  }
  for (const svg of document.querySelectorAll('svg.chart')) {
    const figure = svg.closest('figure');
    if (!figure || !figure.querySelector('details table tbody tr'))
      problems.push('a chart without its figures as a table: ' + svg.getAttribute('aria-label'));
  }
  return problems;
}"""


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS colours given as rgb()/rgba() strings (alpha ignored: opaque)."""

    def luminance(colour: str) -> float:
        red, green, blue = (int(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3])
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def axe_script() -> str:
    return axe_source()


@pytest.fixture(scope="module")
def walk(live_portal) -> dict[str, str]:
    """The live portal lets this module sign in fourteen times within a minute (the login limit
    guards real users, not this walk), and the demo objects the page list names."""
    live_portal.app.config["LOGIN_RATE_LIMIT"] = "1000 per minute"
    return page_values(live_portal.app)


def walked(role: str, language: str) -> list[PageType]:
    """The pages a role's walk checks. In Chinese, every page the role sees. In English, the role's
    first page (its navigation bar) and the page types no role before it in ROLES has checked in
    English: a page type's template is the same for every role, and what the English words can break
    (names, labels, `lang`) is in that template; the buttons only some roles get are checked in each
    role's Chinese walk. Decided from the static list, so each test stands alone under xdist."""
    pages = pages_for(role)
    if language == "zh":
        return pages
    return first_seen(role, pages)


def first_seen(role: str, pages: list[PageType]) -> list[PageType]:
    """The role's first page, and the pages no role before it in ROLES sees."""
    earlier = {page.name for other in ROLES[: ROLES.index(role)] for page in pages_for(other)}
    return [page for n, page in enumerate(pages) if n == 0 or page.name not in earlier]


def contrast_checked(role: str, language: str) -> set[str]:
    """The page types whose colour contrast the role's walk checks: in Chinese, those no earlier
    role's walk has checked, and its first page; in English none (LANGUAGE_NEUTRAL_RULES)."""
    if language != "zh":
        return set()
    return {page.name for page in first_seen(role, pages_for(role))}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("role", ROLES)
def test_no_axe_violations(live_server, browser, axe_script, walk, role, language):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, live_server, role, language)
        reports = []
        contrasted = contrast_checked(role, language)
        for page_type in walked(role, language):
            status = open_page_type(page, live_server, page_type, walk)
            assert status == page_type.status, f"{page_type.name}: HTTP {status} at {page.url}"
            expected_lang = "zh-CN" if language == "zh" else "en"
            assert page.get_attribute("html", "lang") == expected_lang, f"{page_type.name} in {language}"
            violations = axe_violations(page, axe_script, contrast=page_type.name in contrasted)
            if violations:
                reports.append(describe(page_type.name, page.url, violations))
            for problem in page.evaluate(DOM_CHECKS):
                reports.append(f"{page_type.name}  {page.url}\n  {problem}")
        assert not reports, f"axe-core violations for {role} in {language}:\n\n" + "\n\n".join(reports)
    finally:
        context.close()


def browser_page(browser, base: str, role: str, language: str, width: int = 1280):
    context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": 900})
    page = context.new_page()
    sign_in(page, base, role, language)
    return page


def test_a_failed_form_ties_errors_to_fields_and_focuses_its_summary(live_server, browser, walk):
    page = browser_page(browser, live_server, ANONYMOUS, "en")
    try:
        page.goto(f"{live_server}/login")
        page.locator("form [type=submit]").click()
        page.wait_for_load_state()
        for field in ("username", "password"):
            box = page.locator(f"#{field}")
            assert box.get_attribute("aria-invalid") == "true"
            message = page.locator(f"#{box.get_attribute('aria-describedby')}")
            assert message.inner_text().strip() == "This field is required."
        summary = page.locator("#error-summary")
        assert page.evaluate("document.activeElement.id") == "error-summary"
        assert summary.get_by_role("link", name="Username").get_attribute("href") == "#username"
    finally:
        page.context.close()


@pytest.mark.parametrize("path", ["/dashboard/", "/finance/"])
def test_every_chart_has_a_table_of_its_figures_and_readable_text_on_a_phone(
    live_server, browser, walk, path
):
    page = browser_page(browser, live_server, REVIEWER, "en", width=390)
    try:
        page.goto(live_server + path)
        charts = page.locator("svg.chart")
        assert charts.count() >= 1
        for n in range(charts.count()):
            figure = charts.nth(n).locator("xpath=ancestor::figure")
            assert figure.locator("details summary").inner_text() == "Figures as a table"
            assert figure.locator("details table tbody tr").count() >= 1
        smallest = page.evaluate(
            """() => Math.min(...[...document.querySelectorAll('svg.chart text')].map(t => {
                const svg = t.ownerSVGElement;
                const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
                return parseFloat(t.getAttribute('font-size')) * scale;
            }))"""
        )
        assert smallest >= 11
    finally:
        page.context.close()


def test_the_week_grid_names_every_state_in_text_not_by_colour_alone(live_server, browser, walk):
    page = browser_page(browser, live_server, ENTERPRISE, "en")
    try:
        page.goto(f"{live_server}/instruments/{walk['instrument']}/availability")
        names = {
            "free": {"Free", "Book"},
            "held": {"Booked", "Waitlist"},  # an enterprise can join the waitlist for booked time
            "maintenance": {"Maintenance"},
            "closure": {"Closed"},
            "closed": {"Not open"},
            "past": {"Past"},
        }
        cells = page.evaluate(
            "() => [...document.querySelectorAll('#week-grid td')].map(td =>"
            " [td.dataset.state, td.textContent.trim(), getComputedStyle(td).backgroundImage])"
        )
        assert cells
        patterns = {}
        for state, text, image in cells:
            assert text in names[state], (state, text)
            patterns.setdefault(state, set()).add(image)
        assert {"free", "closed"} & set(patterns)  # the demo week has open and closed time at least
        # Booked, maintenance and past time carry a pattern (stripes, hatching, dots), all different.
        marked = {
            state: images.pop()
            for state, images in patterns.items()
            if state in {"held", "maintenance", "past"}
        }
        assert all(image != "none" for image in marked.values())
        assert len(set(marked.values())) == len(marked)
        skip = page.locator("#skip-week-grid")
        assert (
            skip.get_attribute("href") == "#after-week-grid" and page.locator("#after-week-grid").count() == 1
        )
        assert skip.inner_text() == "Skip the week grid"
    finally:
        page.context.close()


def test_focus_rings_reach_three_to_one(live_server, browser, walk):
    page = browser_page(browser, live_server, ANONYMOUS, "en")
    try:
        page.goto(f"{live_server}/instruments/")
        page.keyboard.press("Tab")  # keyboard use: the browser shows :focus-visible rings from now on
        for selector, background in (
            ("main a[href]", "rgb(255, 255, 255)"),
            ("nav.navbar a.nav-link", "rgb(11, 79, 138)"),
            ("main input[name=q]", "rgb(255, 255, 255)"),
            ("main button[type=submit]", "rgb(255, 255, 255)"),
        ):
            page.locator(selector).first.focus()
            style = page.evaluate(
                "() => { const s = getComputedStyle(document.activeElement);"
                " return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor]; }"
            )
            assert style[0] != "none" and style[1] >= 2, (selector, style)
            assert contrast(style[2], background) >= 3, (selector, style)
    finally:
        page.context.close()


def test_a_disabled_pagination_end_is_not_focusable(live_server, browser, walk):
    page = browser_page(browser, live_server, ANONYMOUS, "en")
    try:
        page.goto(f"{live_server}/instruments/")
        disabled = page.locator(".pagination .page-item.disabled").first
        assert disabled.inner_text() == "Previous"
        assert disabled.locator("a, [tabindex]").count() == 0
        assert disabled.locator("[aria-disabled=true]").count() == 1
    finally:
        page.context.close()


def test_links_named_by_a_number_have_a_real_name(live_server, browser, walk):
    page = browser_page(browser, live_server, ADMIN, "en")
    try:
        page.goto(f"{live_server}/bookings/")
        link = page.locator("main td a[href^='/bookings/']").first
        assert re.fullmatch(r"#\d+", link.inner_text())
        assert re.fullmatch(r"Booking #\d+", link.get_attribute("aria-label"))
        page.goto(f"{live_server}/review/?kind=claim")
        assert page.get_by_role("link", name=re.compile(r"^Claim #\d+$")).count() >= 1
    finally:
        page.context.close()


def test_escape_closes_the_mobile_menu(live_server, browser, walk):
    page = browser_page(browser, live_server, ANONYMOUS, "en", width=390)
    try:
        page.goto(f"{live_server}/instruments/")
        toggle = page.locator(".navbar-toggler")
        toggle.click()
        menu = page.locator("#nav-main")
        expect(menu).to_have_class(re.compile(r"\bshow\b"))
        assert toggle.get_attribute("aria-expanded") == "true"
        page.keyboard.press("Escape")
        expect(menu).to_be_hidden()
        assert toggle.get_attribute("aria-expanded") == "false"
        assert page.evaluate("document.activeElement.classList.contains('navbar-toggler')")
    finally:
        page.context.close()


def test_every_page_type_has_its_contrast_checked_in_chinese():
    """The walks skip colour contrast only where an earlier walk checked the same page type."""
    checked = [name for role in ROLES for name in contrast_checked(role, "zh")]
    every = {page.name for role in ROLES for page in pages_for(role)}
    assert set(checked) == every
    assert all(not contrast_checked(role, "en") for role in ROLES)
