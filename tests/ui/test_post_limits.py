"""Issue 11 (G8): booking and cancel forms count per signed-in user, like API tokens."""

import pytest

from slotlock.web import create_app
from tests.ui.conftest import Browser


@pytest.fixture
def tight_app(ui_settings, start_worker):
    settings = ui_settings.model_copy(update={"rate_limit": "3/minute"})
    start_worker(settings)
    return create_app(settings)


def test_form_posts_are_limited_per_user_and_other_users_keep_theirs(tight_app, real_redis):
    alice = Browser(tight_app.test_client())
    assert alice.sign_in("alice").status_code == 303
    statuses = [alice.book("2030-05-04", f"{9 + i:02d}:00", f"t{i}", duration=15).status_code
                for i in range(5)]
    assert statuses[:3] == [303, 303, 303] and statuses[3:] == [429, 429]
    assert int(real_redis.hget("sl:{main:2030-05-04}:state", "version") or 0) == 3
    bob = Browser(tight_app.test_client())  # same address, another user: its own allowance
    assert bob.sign_in("bob").status_code == 303
    assert bob.book("2030-05-04", "15:00", "bob", duration=15).status_code == 303
