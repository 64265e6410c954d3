"""The HTML views end to end through Flask's test client: sign-in, CSRF, booking, refusal,
cancel and the pending page, with a real lease worker deciding the commands."""

from __future__ import annotations

import re

from slotlock.catalog import Catalog
from slotlock.days.keys import user_key
from slotlock.model import Calendar, Rules
from slotlock.users import Users
from slotlock.web import create_app
from tests.procs import wait_for

from .conftest import PASSWORDS, Browser, csrf_token

DAY = "2030-05-04"
DAY_URL = f"/calendars/main/days/{DAY}"


def text(response) -> str:
    return response.get_data(as_text=True)


def api_bookings(client, real_redis, day=DAY):
    token = Users(real_redis).issue_token("root")
    response = client.get(f"/api/v1/calendars/main/days/{day}",
                          headers={"Authorization": f"Bearer {token}"})
    return response.get_json()["bookings"]


# -- sign in -------------------------------------------------------------------------------

def test_every_page_asks_to_sign_in_first(app):
    client = app.test_client()
    for url in ("/", DAY_URL, "/commands/main.20300504.0123456789abcdef",
                "/calendars/main/bookings/20300504.0123456789abcdef/cancel"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/signin?next=")
    assert client.post(DAY_URL, data={}).status_code == 400  # CSRF is checked first


def test_sign_in_with_the_password_then_back_to_the_page_asked_for(browser_for):
    b = browser_for()
    response = b.sign_in("alice", next_url=DAY_URL)
    assert response.status_code == 303
    assert response.headers["Location"] == DAY_URL
    page = b.get(DAY_URL)
    assert page.status_code == 200
    assert "Signed in as alice" in text(page)


def test_wrong_password_or_unknown_user_is_refused_with_one_message(browser_for):
    b = browser_for()
    for name, password in (("alice", "nope"), ("nobody", "whatever")):
        if name == "nobody":
            page = b.get("/signin")
            response = b.client.post("/signin", data={"username": name, "password": password,
                                                      "csrf_token": csrf_token(text(page))})
        else:
            response = b.sign_in(name, password)
        assert response.status_code == 401
        assert "Wrong user name or password." in text(response)
    assert b.get(DAY_URL).status_code == 302


def test_sign_in_never_redirects_off_site(browser_for):
    b = browser_for()
    response = b.sign_in("alice", next_url="//evil.example/x")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_session_cookie_is_httponly_samesite_lax_and_secure_over_https(app, ui_settings):
    b = Browser(app.test_client())
    cookie = b.sign_in("alice").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie

    https = Browser(app.test_client())
    page = https.client.get("/signin", base_url="https://localhost")
    response = https.client.post("/signin", base_url="https://localhost", data={
        "username": "alice", "password": PASSWORDS["alice"], "csrf_token": csrf_token(text(page))},
        headers={"Referer": "https://localhost/signin"})
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")

    production = create_app(ui_settings.model_copy(update={"env": "production"}))
    assert production.config["SESSION_COOKIE_SECURE"] is True


def test_sign_out_ends_the_session(browser_for):
    b = browser_for("alice")
    page = b.get(DAY_URL)
    response = b.client.post("/signout", data={"csrf_token": csrf_token(text(page))})
    assert response.status_code == 303
    assert b.get(DAY_URL).status_code == 302


def test_a_removed_user_is_signed_out_at_once(browser_for, real_redis):
    b = browser_for("bob")
    assert b.get(DAY_URL).status_code == 200
    real_redis.delete(user_key("bob"))
    assert b.get(DAY_URL).status_code == 302


# -- CSRF and headers ----------------------------------------------------------------------

def test_forms_without_a_csrf_token_are_refused_and_change_nothing(browser_for, real_redis):
    b = browser_for("alice")
    response = b.client.post(DAY_URL, data={"start": "10:00", "duration": "30", "title": "x"})
    assert response.status_code == 400
    assert "Form refused" in text(response)
    response = b.client.post(DAY_URL, data={"start": "10:00", "duration": "30", "title": "x",
                                            "csrf_token": "forged"})
    assert response.status_code == 400
    assert api_bookings(b.client, real_redis) == []
    # and signing in needs a token too
    assert Browser(b.client.application.test_client()).client.post(
        "/signin", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 400


def test_the_json_api_stays_exempt_from_csrf(app, real_redis):
    token = Users(real_redis).issue_token("alice")
    response = app.test_client().post("/api/v1/calendars/main/bookings", headers={
        "Authorization": f"Bearer {token}"}, json={"start": f"{DAY}T08:00", "end": f"{DAY}T08:30",
                                                  "title": "via API"})
    assert response.status_code == 201


def test_security_headers_on_pages_and_static_files(browser_for):
    b = browser_for("alice")
    for response in (b.get(DAY_URL), b.get("/signin"), b.get("/static/style.css")):
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
    css = b.get("/static/style.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_pages_load_nothing_from_outside(browser_for):
    html = text(browser_for("alice").get(DAY_URL))
    assert not re.search(r'(src|href)="(https?:)?//', html)


# -- the day -------------------------------------------------------------------------------

def test_day_view_has_one_free_slot_link_per_slot_prefilling_the_form(browser_for):
    b = browser_for("alice")
    html = text(b.get(DAY_URL))
    links = re.findall(r'<td class="free"><a href="([^"]+)"', html)
    assert len(links) == 96  # 15-minute slots, open all day
    assert links[40] == f"{DAY_URL}?start=10:00&amp;duration=15#book"
    prefilled = text(b.get(f"{DAY_URL}?start=10:00&duration=15"))
    assert re.search(r'id="start"[^>]*value="10:00"', prefilled)
    assert re.search(r'id="duration"[^>]*value="15"', prefilled)


def test_navigation_today_date_picker_and_calendar_switcher(browser_for, real_redis):
    Catalog(real_redis).put(Calendar("lab", "Lab", "Europe/Berlin", Rules(horizon_days=0)))
    b = browser_for("alice")
    html = text(b.get(DAY_URL))
    assert 'href="/calendars/main/days/2030-05-03"' in html
    assert 'href="/calendars/main/days/2030-05-05"' in html
    assert '<option value="lab">Lab</option>' in html
    assert b.get("/go?calendar=lab&date=2031-01-02").headers["Location"] == \
        "/calendars/lab/days/2031-01-02"
    today = b.get("/").headers["Location"]
    assert re.fullmatch(r"/calendars/main/days/\d{4}-\d{2}-\d{2}", today)
    assert b.get("/calendars/nope/days/2030-05-04").status_code == 404
    assert b.get("/calendars/main/days/2030-13-40").status_code == 404


# -- booking -------------------------------------------------------------------------------

def test_booking_posts_then_redirects_to_the_day_with_a_message(browser_for, real_redis):
    b = browser_for("alice")
    response = b.book(DAY, "10:00", "Stand-up", duration=30)
    assert response.status_code == 303
    assert response.headers["Location"] == DAY_URL
    page = text(b.get(DAY_URL))
    assert "Booked “Stand-up”, 10:00–10:30." in page
    assert re.search(r'<th scope="row">10:00</th>\s*<td class="booked mine" rowspan="2">', page)
    [booking] = api_bookings(b.client, real_redis)
    assert (booking["title"], booking["owner"]) == ("Stand-up", "alice")
    assert booking["start"] == f"{DAY}T10:00:00+00:00" and booking["end"] == f"{DAY}T10:30:00+00:00"


def test_an_end_time_wins_over_a_duration_and_00_00_is_the_closing_midnight(browser_for,
                                                                              real_redis):
    b = browser_for("alice")
    assert b.book(DAY, "23:00", "Night shift", end="00:00", duration=15).status_code == 303
    [booking] = api_bookings(b.client, real_redis)
    assert booking["end"] == "2030-05-05T00:00:00+00:00"


def test_overlap_is_refused_with_the_typed_values_and_the_conflict_highlighted(browser_for):
    alice, bob = browser_for("alice"), browser_for("bob")
    assert alice.book(DAY, "10:00", "Stand-up", duration=30).status_code == 303
    response = bob.book(DAY, "10:15", "Bob's review", duration=60)
    assert response.status_code == 409
    page = text(response)
    assert "This time is already taken: it overlaps another booking" in page
    assert "“Stand-up”, 10:00–10:30, booked by alice" in page
    assert re.search(r'class="booking conflict" id="booking-[0-9.a-f]+">\s*'
                     r'<strong class="badge">Conflicts with your request</strong>', page)
    assert re.search(r'id="title"[^>]*value="Bob&#39;s review"', page)
    assert re.search(r'id="start"[^>]*value="10:15"', page)
    assert re.search(r'id="duration"[^>]*value="60"', page)


def test_rule_violations_and_bad_input_are_explained_on_the_form(browser_for, real_redis):
    Catalog(real_redis).put(Calendar("room", "Room", "UTC",
                                     Rules(granularity_minutes=30, horizon_days=0, open_from=__import__(
                                         "datetime").time(8), max_length_minutes=120)))
    b = browser_for("alice")
    url = "/calendars/room/days/2030-05-04"
    response = b.submit(url, url, {"start": "09:10", "duration": "30", "title": "Odd"})
    assert response.status_code == 422
    assert "This calendar’s rules do not allow it: bookings start and end on the 30-minute grid" \
        in text(response).replace("&#39;", "’").replace("'", "’")
    response = b.submit(url, url, {"start": "09:00", "title": "No end"})
    assert response.status_code == 422
    assert "Give an end time or a duration." in text(response)
    assert 'aria-invalid="true"' in text(response)
    response = b.submit(url, url, {"start": "06:00", "duration": "60", "title": "Early"})
    assert response.status_code == 422
    assert "open from 08:00 to 24:00" in text(response)
    html = text(b.get(url))
    assert re.search(r'<th scope="row">00:00–08:00</th>\s*<td class="closed">Closed</td>', html)


def test_a_time_the_clocks_skip_is_refused_on_the_field(browser_for, real_redis):
    Catalog(real_redis).put(Calendar("berlin", "Berlin", "Europe/Berlin", Rules(60, horizon_days=0)))
    b = browser_for("alice")
    url = "/calendars/berlin/days/2030-03-31"
    response = b.submit(url, url, {"start": "02:00", "duration": "60", "title": "Gap"})
    assert response.status_code == 422
    assert "02:00 does not exist on 2030-03-31 in Europe/Berlin" in text(response)


# -- cancel --------------------------------------------------------------------------------

def booking_id(page: str, title: str) -> str:
    match = re.search(r'id="booking-([0-9.a-f]+)">\s*<span class="title">' + re.escape(title), page)
    assert match, f"no booking {title} on the page"
    return match.group(1)


def test_cancel_asks_for_confirmation_then_removes_the_booking(browser_for, real_redis):
    b = browser_for("alice")
    b.book(DAY, "11:00", "Retro", duration=45)
    bid = booking_id(text(b.get(DAY_URL)), "Retro")
    url = f"/calendars/main/bookings/{bid}/cancel"
    confirm = b.get(url)
    assert confirm.status_code == 200 and "Cancel this booking?" in text(confirm)
    assert api_bookings(b.client, real_redis) != []  # a GET changes nothing
    response = b.submit(url, url, {})
    assert response.status_code == 303 and response.headers["Location"] == DAY_URL
    assert "Cancelled “Retro” (11:00–11:45)." in text(b.get(DAY_URL))
    assert api_bookings(b.client, real_redis) == []
    assert b.get(url).status_code == 404


def test_only_the_owner_or_an_admin_may_cancel(browser_for, real_redis):
    alice, bob, root = browser_for("alice"), browser_for("bob"), browser_for("root")
    alice.book(DAY, "12:00", "Lunch", duration=60)
    bid = booking_id(text(alice.get(DAY_URL)), "Lunch")
    url = f"/calendars/main/bookings/{bid}/cancel"
    assert f'href="{url}"' not in text(bob.get(DAY_URL))
    assert bob.get(url).status_code == 403
    token = csrf_token(text(bob.get(DAY_URL)))
    assert bob.client.post(url, data={"csrf_token": token}).status_code == 403
    assert f'href="{url}"' in text(root.get(DAY_URL))
    assert root.submit(url, url, {}).status_code == 303
    assert api_bookings(alice.client, real_redis) == []


# -- pending -------------------------------------------------------------------------------

def test_a_pending_booking_shows_a_self_refreshing_page_until_a_worker_decides(
        idle_app, ui_settings, start_worker, real_redis):
    b = Browser(idle_app.test_client())
    assert b.sign_in("alice").status_code == 303
    response = b.book(DAY, "14:00", "Queued", duration=30)
    assert response.status_code == 303
    status_url = response.headers["Location"]
    assert re.fullmatch(r"/commands/main\.20300504\.[0-9a-f]+", status_url)
    page = b.get(status_url)
    assert page.status_code == 202
    assert '<meta http-equiv="refresh" content="1">' in text(page)
    assert "Your request is queued" in text(page)
    start_worker(ui_settings)
    settled = wait_for(lambda: (r := b.get(status_url)).status_code == 303 and r, 20,
                       0.1, "the command to be decided")
    assert settled.headers["Location"] == DAY_URL
    assert "Booked “Queued”, 14:00–14:30." in text(b.get(DAY_URL))


def test_a_pending_booking_refused_later_shows_the_form_again_with_the_conflict(
        idle_app, ui_settings, start_worker, real_redis):
    token = Users(real_redis).issue_token("bob")
    api = idle_app.test_client()
    first = api.post("/api/v1/calendars/main/bookings", headers={"Authorization": f"Bearer {token}"},
                     json={"start": f"{DAY}T15:00", "end": f"{DAY}T16:00", "title": "Bob first"})
    assert first.status_code == 202
    b = Browser(idle_app.test_client())
    b.sign_in("alice")
    status_url = b.book(DAY, "15:30", "Alice later", duration=30).headers["Location"]
    start_worker(ui_settings)
    refused = wait_for(lambda: (r := b.get(status_url)).status_code != 202 and r, 20, 0.1,
                       "the command to be decided")
    assert refused.status_code == 409
    page = text(refused)
    assert "This time is already taken" in page and "booked by bob" in page
    assert re.search(r'id="title"[^>]*value="Alice later"', page)
    assert 'class="booking conflict"' in page
    # settled once: a reload now goes back to the day
    assert b.get(status_url).status_code == 303


def test_password_guessing_is_rate_limited_per_address(browser_for):
    b = browser_for()
    statuses = [b.sign_in("alice", "guess").status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    assert "Too Many Requests" in text(b.sign_in("alice"))
