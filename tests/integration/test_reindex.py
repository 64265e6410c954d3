"""The re-index safety net walks sl:days a chunk at a time: no SCAN, cost per step bounded."""

from datetime import date, timedelta

from slotlock.days.index import WorkIndex
from slotlock.days.keys import ACTIVE, DAYS, DayKeys, partition


def test_a_queued_day_missing_from_the_index_is_found_within_one_cycle(any_redis):
    first = date(2027, 1, 1)
    parts = [partition("main", first + timedelta(days=i)) for i in range(1200)]
    any_redis.zadd(DAYS, {p: i for i, p in enumerate(parts)})
    orphan = parts[1111]
    any_redis.hset(DayKeys(orphan).state, "pending", 1)
    index = WorkIndex(any_redis)
    found = [index.reindex_step(chunk=500) for _ in range(3)]
    assert found == [[], [], [orphan]]
    assert any_redis.zscore(ACTIVE, orphan) is not None
    assert index.reindex_step(chunk=500) == []  # back at the start, nothing new
