"""The operator: changes calendars while the clients book, as an admin would.

Every few seconds it changes one rule of one calendar through the catalog (granularity,
buffer, quota, opening hours, booking window), so the workers decide under a new rules
revision mid-run and the audit must replay each outcome under the revision it recorded.
Now and then it tries to move a calendar that has bookings to another time zone with
``slotlock calendar put ID --timezone Z``: that must be refused (exit status 1); the
checker counts a zone change that went through as a ``zone_change`` anomaly.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from datetime import time as dtime

import redis

from ..catalog import Catalog
from ..days.keys import DayKeys, partition
from ..model import Rules
from .clients import CalendarPlan
from .history import History, Op

CHANGES = (
    {"granularity_minutes": 30}, {"granularity_minutes": 15},
    {"buffer_minutes": 15}, {"buffer_minutes": 0},
    {"max_bookings_per_owner": 3}, {"max_bookings_per_owner": None},
    {"open_from": dtime(6), "open_until": dtime(22)}, {"open_from": dtime(0), "open_until": None},
    {"horizon_days": 30}, {"horizon_days": 3000}, {"horizon_days": 0},
)
OTHER_ZONES = ("UTC", "Pacific/Auckland", "America/Sao_Paulo", "Asia/Tokyo")


class Operator(threading.Thread):
    def __init__(self, client: redis.Redis, redis_url: str, plans: list[CalendarPlan],
                 history: History, seed: int, t0: float, stop: threading.Event,
                 rules_every_s: float = 2.0, zone_every_s: float = 7.0,
                 first_zone_s: float = 4.0):
        super().__init__(name="operator", daemon=True)
        self.client = client
        self.redis_url = redis_url
        self.plans = plans
        self.history = history
        self.rng = random.Random(seed ^ 0x0CA1)
        self.t0 = t0
        self.stop_event = stop
        self.rules_every_s = rules_every_s
        self.zone_every_s = zone_every_s
        self.next_zone = first_zone_s
        self.errors: list[str] = []
        self.revisions = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        while not self.stop_event.wait(self.rng.uniform(0.5, 1.5) * self.rules_every_s):
            try:
                self.change_rules()
                if self.now() >= self.next_zone:
                    self.next_zone = self.now() + self.zone_every_s
                    self.change_zone()
            except redis.RedisError as exc:  # the faults hit the harness's connection too
                self.errors.append(f"operator: {exc!r}")

    def change_rules(self) -> None:
        plan = self.rng.choice(self.plans)
        change = self.rng.choice(CHANGES)
        catalog = Catalog(self.client)
        current = catalog.get(plan.id)
        rules = Rules.from_dict(current.rules.to_dict() | {
            k: (v.strftime("%H:%M") if isinstance(v, dtime) else v) for k, v in change.items()})
        stored, changed = catalog.put(current.with_changes(rules=rules))
        self.revisions += changed
        self.history.add(Op(0, "operator", "rules", "", "", self.now(), calendar=plan.id,
                            type="ok", complete=self.now(),
                            notes=[f"revision {stored.revision}: {change}"]))

    def used(self, plan: CalendarPlan) -> bool:
        pipe = self.client.pipeline(transaction=False)
        for day in plan.all_dates:
            pipe.xlen(DayKeys(partition(plan.id, day)).cmds)
        return any(pipe.execute())

    def change_zone(self) -> None:
        """``slotlock calendar put`` as an operator would type it, straight to Redis."""
        plan = self.rng.choice(self.plans)
        if not self.used(plan):
            return
        zone = self.rng.choice(OTHER_ZONES)
        op = self.history.add(Op(0, "operator", "zone", "", "", self.now(), target=plan.id,
                                 calendar=plan.id))
        env = {**os.environ, "REDIS_URL": self.redis_url}
        done = subprocess.run([sys.executable, "-m", "slotlock", "calendar", "put", plan.id,
                               "--timezone", zone], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        op.type = "ok" if done.returncode == 0 else "fail"
        op.status = done.returncode
        op.notes = [f"-> {zone}", (done.stderr or done.stdout).strip()[-300:]]
        op.complete = self.now()
