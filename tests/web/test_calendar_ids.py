"""Issue 11: an id that cannot be a calendar's is a 404 on every route, and no Redis key is
built from it."""

import pytest


@pytest.mark.parametrize("cal", ["a%7Bb%7D", "x" * 300, "%00", "UPPER", "a:b", "..", "a%20b"])
def test_an_impossible_calendar_id_is_a_404_everywhere(client, tokens, cal):
    for url in (f"/api/v1/calendars/{cal}/days/2030-05-04",
                f"/api/v1/calendars/{cal}/bookings/20300504.0123456789abcdef"):
        r = client.get(url, headers=tokens["alice"])
        assert r.status_code == 404, (url, r.status_code, r.get_data(as_text=True)[:200])
    body = {"start": "2030-05-04T10:00", "end": "2030-05-04T11:00", "title": "x"}
    r = client.post(f"/api/v1/calendars/{cal}/bookings", json=body, headers=tokens["alice"])
    assert r.status_code == 404, (r.status_code, r.get_data(as_text=True)[:200])


@pytest.mark.parametrize("cal", ["a{b}", "x" * 65, "\x00", "UPPER", "a:b", "", "sl:*"])
def test_no_redis_key_is_built_from_an_impossible_id(cal):
    from slotlock.catalog import Catalog

    assert Catalog(object()).find(cal) is None  # object(): any Redis call would raise
