"""A person in a real headless Chromium, against gunicorn + a lease worker + redis-server:
sign in, find the day, book a free slot, meet a refusal with the conflicting booking shown,
cancel with confirmation; a form without its CSRF token is refused. Screenshots of the day
at desktop and phone widths go to ``test-artifacts/``."""

from __future__ import annotations

import re
from datetime import datetime, time

import pytest
from playwright.sync_api import expect

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.config import Settings
from slotlock.model import Calendar, Rules

from .conftest import PASSWORDS

DAY = "2030-05-06"
ROOM_URL = f"/calendars/room-a/days/{DAY}"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def room(stack):
    """Room A (Berlin time, 30-minute slots, open 08:00-18:00) with bob's bookings on it."""
    Catalog(stack["redis"]).put(Calendar("room-a", "Room A", "Europe/Berlin", Rules(
        granularity_minutes=30, open_from=time(8), open_until=time(18), horizon_days=0)))
    client = Client(Settings(redis_url=stack["settings_env"]["REDIS_URL"], secret_key="t"))
    for start, end, title in (("09:00", "10:00", "Design review"),
                              ("13:00", "14:30", "Customer call")):
        result = client.book("bob", "room-a", datetime.fromisoformat(f"{DAY}T{start}"),
                             datetime.fromisoformat(f"{DAY}T{end}"), title, wait_ms=8000)
        assert result.outcome and result.outcome["status"] == "accepted", result
    return "room-a"


def sign_in(page, base: str, name: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    page.get_by_label("User name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".flash-success")).to_have_text(f"Signed in as {name}.")


def test_sign_in_book_see_a_refusal_and_cancel_without_javascript(chromium, stack, room,
                                                                   artifacts):
    base = stack["url"]
    context = chromium.new_context(viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, base, "alice")

        # calendar switcher and date picker (a plain GET form)
        page.get_by_label("Calendar", exact=True).select_option("room-a")
        page.get_by_label("Date", exact=True).fill(DAY)
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(base + ROOM_URL)
        expect(page.get_by_role("heading", level=1)).to_contain_text("Room A")
        expect(page.locator(".booking", has_text="Design review")).to_contain_text("09:00–10:00 · bob")

        # a free slot pre-fills the form
        page.get_by_role("link", name="Free: book 10:00").click()
        expect(page.get_by_label("Start", exact=True)).to_have_value("10:00")
        expect(page.get_by_label("Duration (minutes)", exact=True)).to_have_value("30")
        page.get_by_label("Duration (minutes)", exact=True).fill("60")
        page.get_by_label("Title", exact=True).fill("Sprint planning")
        page.get_by_role("button", name="Book", exact=True).click()
        expect(page).to_have_url(base + ROOM_URL)
        expect(page.locator(".flash-success")).to_have_text("Booked “Sprint planning”, 10:00–11:00.")
        mine = page.locator(".booking.mine", has_text="Sprint planning")
        expect(mine).to_contain_text("10:00–11:00 · alice (you)")
        page.screenshot(path=str(artifacts / "day-desktop.png"), full_page=True)

        # an overlapping booking is refused, the conflicting booking shown and highlighted
        page.get_by_label("Start", exact=True).fill("09:30")
        page.get_by_label("Duration (minutes)", exact=True).fill("30")
        page.get_by_label("Title", exact=True).fill("Overlap attempt")
        page.get_by_role("button", name="Book", exact=True).click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("This time is already taken")
        expect(alert).to_contain_text("“Design review”, 09:00–10:00, booked by bob")
        conflict = page.locator(".booking.conflict")
        expect(conflict).to_have_count(1)
        expect(conflict).to_contain_text("Design review")
        expect(conflict.locator(".badge")).to_have_text("Conflicts with your request")
        expect(page.get_by_label("Title", exact=True)).to_have_value("Overlap attempt")
        expect(page.get_by_label("Start", exact=True)).to_have_value("09:30")
        page.screenshot(path=str(artifacts / "day-refusal-desktop.png"), full_page=True)

        # cancel, with a confirmation step
        page.goto(base + ROOM_URL)
        page.get_by_role("link", name="Cancel “Sprint planning”").click()
        expect(page.get_by_role("heading", name="Cancel this booking?")).to_be_visible()
        page.get_by_role("button", name="Yes, cancel it").click()
        expect(page).to_have_url(base + ROOM_URL)
        expect(page.locator(".flash-success")).to_have_text(
            "Cancelled “Sprint planning” (10:00–11:00).")
        expect(page.locator(".booking", has_text="Sprint planning")).to_have_count(0)
        expect(page.get_by_role("link", name="Free: book 10:00")).to_be_visible()
        # bob's bookings carry no cancel link for alice
        expect(page.get_by_role("link", name="Cancel “Design review”")).to_have_count(0)
    finally:
        context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(chromium, stack, room):
    base = stack["url"]
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, base, "bob")
        page.goto(base + ROOM_URL)
        page.evaluate("document.querySelector('#book input[name=csrf_token]').remove()")
        page.get_by_label("Start", exact=True).fill("16:00")
        page.get_by_label("Duration (minutes)", exact=True).fill("30")
        page.get_by_label("Title", exact=True).fill("Sneaky")
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name="Book", exact=True).click()
        assert posted.value.status == 400
        expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
        page.goto(base + ROOM_URL)
        expect(page.locator(".booking", has_text="Sneaky")).to_have_count(0)
        expect(page.get_by_role("link", name="Free: book 16:00")).to_be_visible()
    finally:
        context.close()


def watch_for_bad_resources(page) -> list[str]:
    """Blocked or erroring loads of ``page``: console errors (a CSP refusal is one), failed
    requests and answers >= 400. A request *aborted* (``net::ERR_ABORTED``) is left out:
    that is the browser cancelling a pending load (the favicon, a stylesheet) because the
    test moved on to the next page, not a resource that was refused or broken; a blocked
    one fails with its own code (e.g. ``net::ERR_BLOCKED_BY_CSP``) and logs a console error.
    """
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed ({r.failure}): {r.url}")
            if r.failure != "net::ERR_ABORTED" else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    return problems


def test_the_day_fits_a_phone_and_a_desktop_with_no_blocked_resources(chromium, stack, room,
                                                                      artifacts):
    base = stack["url"]
    for name, viewport in (("phone", PHONE), ("desktop-viewport", DESKTOP)):
        context = chromium.new_context(viewport=viewport)
        page = context.new_page()
        problems = watch_for_bad_resources(page)
        loaded: list[str] = []
        page.on("requestfinished", lambda r, loaded=loaded: loaded.append(r.url))
        try:
            sign_in(page, base, "alice")
            page.goto(base + ROOM_URL, wait_until="networkidle")
            expect(page.locator(".booking", has_text="Customer call")).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{name}: page is {width}px wide"
            # the stylesheet is applied (served by the app, allowed by the CSP)
            colour = page.locator("header.site").evaluate(
                "el => getComputedStyle(el).backgroundColor")
            assert colour == "rgb(29, 78, 216)"
            page.screenshot(path=str(artifacts / f"day-{name}.png"),
                            full_page=name == "phone")
            assert problems == [], problems
            assert any(url.endswith("/static/style.css") for url in loaded), loaded
        finally:
            context.close()


def test_the_resource_watch_sees_blocked_and_erroring_loads(chromium, stack, room):
    """The watch above is not blind: a load the CSP refuses and a 404 are both reported."""
    base = stack["url"]
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, base, "alice")
        page.goto(base + ROOM_URL, wait_until="networkidle")
        problems = watch_for_bad_resources(page)
        page.evaluate("""() => {
            for (const src of ['http://127.0.0.1:9/elsewhere.png', '/static/missing.png']) {
                const img = document.createElement('img'); img.src = src;
                document.body.appendChild(img);
            }
        }""")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)
        assert any("127.0.0.1:9/elsewhere.png" in p for p in problems), problems
        assert any(p.startswith("HTTP 404") and "missing.png" in p for p in problems), problems
    finally:
        context.close()
