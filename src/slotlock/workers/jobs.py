"""``slotlock jobs``: an rq worker (Heroku-style, with its scheduler) and a ticker.

rq runs the jobs; the ticker, a thread of the same process, decides *when*:

- every ``SLOTLOCK_NOTIFY_POLL_MS``: a publish job for each day in ``sl:outbox:days``,
  with an id derived from the day and the event at the head of its outbox, enqueued
  with ``unique=True``: however many ``slotlock jobs`` processes run, one job per head;
- periodic jobs (recent audit, nightly audit, outbox sweep, retention): a run belongs to
  a time slot (``floor(now / interval)``); the process that wins ``SET NX`` on the slot's
  key enqueues it under the id ``<name>-<slot>`` (``unique=True`` as well). rq's own cron
  runner has no lock between processes, and a deploy briefly runs two of them.

Every job is idempotent besides: audits overwrite a day's findings, retention refuses to
move a snapshot backwards, publishing locks the day and dedups by event id.

Why ``HerokuWorker``: on a PaaS every process gets SIGTERM at once; a plain rq worker's
work horse dies with it mid-job. The Heroku-style worker shields the horse and gives it
a grace period; publish jobs carry ``Retry`` so a job cut short runs again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker import HerokuWorker, Worker

from ..catalog import Catalog
from ..config import Settings
from ..days.keys import CHANGED, OUTBOX_DAYS, job_tick_key, publish_lock_key, split_partition
from ..days.scripts import Scripts
from ..redis_conn import connect, use_cluster
from . import audit, notify, retention

log = logging.getLogger("slotlock.jobs")

QUEUE = "slotlock"
# Jobs are stored as JSON, never pickle: whoever can write to Redis must not be able to
# make a jobs process run code. Every job argument and result is a str, list or dict.
SERIALIZER = JSONSerializer


# -- the process's connections (rebuilt after a fork: the work horse gets its own) ------------

@dataclass
class Context:
    settings: Settings
    client: redis.Redis  # decode_responses=True, like the rest of slotlock
    rq: redis.Redis  # decode_responses=False, as rq requires
    pid: int


_context: Context | None = None
_override: Context | None = None


def rq_connection(settings: Settings) -> redis.Redis:
    """rq's connection: ``SLOTLOCK_JOBS_REDIS_URL``, else ``REDIS_URL`` (a plain client:
    rq cannot run on a Redis Cluster)."""
    return redis.Redis.from_url(settings.jobs_redis_url or settings.redis_url,
                                socket_connect_timeout=settings.redis_timeout_ms / 1000)


def data_connection(settings: Settings) -> redis.Redis:
    """slotlock's data, as every process reaches it (the cluster client with
    ``SLOTLOCK_REDIS_CLUSTER=on``)."""
    return connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms,
                   cluster=use_cluster(settings))


def configure(settings: Settings, client: redis.Redis | None = None,
              rq: redis.Redis | None = None) -> Context:
    """Set the context jobs run with. Given clients (tests: fakeredis) survive a fork."""
    global _context, _override
    ctx = Context(settings, client or data_connection(settings),
                  rq or rq_connection(settings), os.getpid())
    if client is not None:
        _override = ctx
    _context = ctx
    return ctx


def context() -> Context:
    if _override is not None:
        return _override
    if _context is None or _context.pid != os.getpid():
        configure(_context.settings if _context else Settings())
    return _context


def queue(ctx: Context | None = None) -> Queue:
    ctx = ctx or context()
    return Queue(QUEUE, connection=ctx.rq, serializer=SERIALIZER)


def make_worker(ctx: Context, worker_class: type[Worker] = HerokuWorker, **kwargs) -> Worker:
    return worker_class([queue(ctx)], connection=ctx.rq, serializer=SERIALIZER, **kwargs)


# -- the jobs (module-level functions: rq enqueues them by name) ------------------------------

def publish_job(part: str) -> dict:
    ctx = context()
    result = notify.Publisher(ctx.client, ctx.settings).publish_day(part)
    return result.__dict__


def audit_days_job(parts: list[str]) -> dict:
    ctx = context()
    catalog = Catalog(ctx.client)
    bad = [r.day for r in (audit.audit_and_record(ctx.client, p, catalog) for p in parts)
           if not r.ok]
    if bad:
        log.error("audit: findings on %s", ", ".join(bad))
    return {"audited": len(parts), "with_findings": bad}


def audit_recent_job() -> dict:
    """Days committed to since two audit intervals ago (one missed run is covered)."""
    ctx = context()
    since = int((time.time() - 2 * ctx.settings.audit_interval_s) * 1000)
    parts = ctx.client.zrangebyscore(CHANGED, since, "+inf")
    ctx.client.zremrangebyscore(CHANGED, "-inf", f"({since - 86_400_000}")
    return audit_days_job(parts)


def audit_nightly_job(today: str | None = None) -> dict:
    """Every day of the last N days (by date, every calendar), found by index and SCAN."""
    ctx = context()
    end = date.fromisoformat(today) if today else datetime.now(UTC).date()
    first = end - timedelta(days=ctx.settings.audit_nightly_days)
    parts = [p for p in audit.known_days(ctx.client) if first <= split_partition(p)[1] <= end]
    return audit_days_job(parts)


def outbox_sweep_job() -> dict:
    ctx = context()
    return {"outboxes": notify.sweep_outboxes(ctx.client)}


def retention_job() -> dict:
    ctx = context()
    since = int((time.time() - 2 * ctx.settings.retention_interval_s) * 1000)
    results = retention.run_retention(ctx.client, ctx.settings.retention_days,
                                      ctx.settings.idempotency_ttl_s,
                                      compact_after=ctx.settings.compact_after,
                                      busy_since_ms=since)
    return {"days": len(results),
            "retained": [r.day for r in results if r.status == "retained"]}


# -- enqueueing -------------------------------------------------------------------------------

def publish_job_id(part: str, head: str) -> str:
    return "publish-" + hashlib.sha1(f"{part}|{head}".encode()).hexdigest()[:24]


ORPHAN_RETRY_S = 10  # a stalled publish job of one outbox head is replaced this often at most
# rq's registry cleaning. Not what restarts a dead scheduler (see JobsWorker): rq checks it
# only when its loop comes round, after a job or an idle dequeue (~7 minutes), so a shorter
# interval would not make that prompt.
MAINTENANCE_S = 60
SCHEDULER_CHECK_S = 1.0  # the ticker looks for a dead rq scheduler process this often
PUBSUB_WAIT_S = 1.0  # bounds the wait for rq's pubsub thread as a worker quits
STALLED_AFTER_S = 5  # a retry this far past its time waits for a dead rq scheduler
WILL_RUN = (JobStatus.QUEUED, JobStatus.DEFERRED)


def enqueue_publish(ctx: Context, part: str, head: str) -> bool:
    """Enqueue the day's publish job, once per outbox head.

    If a job with that id exists but nobody holds the day's publish lock and the job will
    not run by itself, a job under a second id (new every ``ORPHAN_RETRY_S``) takes over,
    so the day's events never wait on rq's bookkeeping (each case found by the fault
    harness):

    - "started" by a work horse that died with Redis or SIGKILL (rq marks it failed only
      after its timeout);
    - "queued" but on rq's intermediate list: dequeued by an rq worker that died before
      its work horse started the job (rq's maintenance fails it one to two minutes later);
    - "scheduled" for a retry more than ``STALLED_AFTER_S`` ago: rq's scheduler process
      dies on a Redis error; the ticker restarts it within seconds (``JobsWorker``), but
      not while Redis is down, nor while a dead process's lock lasts (another process's
      scheduler killed with it);
    - "failed" after its last retry (kept for its failure TTL): deliveries go on.

    Two publish jobs of one day are harmless: the publish lock serialises them and
    delivery is deduplicated by event id.
    """
    job_id = publish_job_id(part, head)
    if _enqueue_publish(ctx, part, job_id):
        return True
    if ctx.client.exists(publish_lock_key(part)):
        return False  # a live publisher holds the day
    if not _stalled(ctx, job_id):
        return False
    replacement = f"{job_id}-{int(time.time() // ORPHAN_RETRY_S)}"
    if not _enqueue_publish(ctx, part, replacement):
        return False  # this interval's replacement exists already
    log.warning("publish job %s of %s is stalled; %s takes over", job_id, part, replacement)
    return True


def _stalled(ctx: Context, job_id: str) -> bool:
    try:
        status = Job.fetch(job_id, connection=ctx.rq, serializer=SERIALIZER).get_status(
            refresh=True)
    except NoSuchJobError:
        return False  # gone since: the next tick enqueues it under its own id
    if status == JobStatus.QUEUED:
        # rq 2 dequeues by moving a job to an intermediate list and marks it started in
        # the work horse: a worker that died in between leaves it "queued" on that list
        # until its maintenance fails it (one to two minutes); a job just taken by a live
        # worker is replaced too, which is harmless (see above). The intermediate list is
        # short; the queue itself is not searched.
        return ctx.rq.lpos(queue(ctx).intermediate_queue_key, job_id) is not None
    if status in WILL_RUN:
        return False
    if status == JobStatus.SCHEDULED:
        try:
            due = ScheduledJobRegistry(queue=queue(ctx)).get_scheduled_time(job_id)
        except NoSuchJobError:
            return True  # "scheduled" but in no registry: nothing will move it
        return (datetime.now(UTC) - due).total_seconds() > STALLED_AFTER_S
    return True  # started (no lock held: its horse is dead), failed, stopped, finished


def _enqueue_publish(ctx: Context, part: str, job_id: str) -> bool:
    try:
        queue(ctx).enqueue(publish_job, part, job_id=job_id, unique=True,
                           retry=Retry(max=len(ctx.settings.retry_intervals),
                                       interval=ctx.settings.retry_intervals),
                           result_ttl=0, failure_ttl=60, job_timeout=120,
                           description=f"publish {part}")
    except DuplicateJobError:
        return False
    return True


def dispatch_publishes(ctx: Context) -> int:
    """One publish job per day with events, keyed by the event at the head of its outbox."""
    enqueued = 0
    for part, score in notify.days_with_events(ctx.client):
        head = notify.outbox_head(ctx.client, part)
        if head is None:
            # read the score before the emptiness check: see days/index_remove.lua
            Scripts(ctx.client).index_remove(keys=[OUTBOX_DAYS], args=[part, repr(score)])
            continue
        enqueued += enqueue_publish(ctx, part, head)
    return enqueued


@dataclass(frozen=True)
class Periodic:
    name: str
    func: Callable
    interval_s: Callable[[Settings], int]
    offset_s: Callable[[Settings], int] = lambda s: 0
    timeout_s: int = 1800


PERIODIC = (
    Periodic("outbox-sweep", outbox_sweep_job, lambda s: s.outbox_sweep_s, timeout_s=300),
    Periodic("audit-recent", audit_recent_job, lambda s: s.audit_interval_s),
    Periodic("audit-nightly", audit_nightly_job, lambda s: 86_400,
             lambda s: s.audit_nightly_hour * 3600, timeout_s=3600),
    Periodic("retention", retention_job, lambda s: s.retention_interval_s, timeout_s=3600),
)


def slot_of(now: float, interval: int, offset: int) -> int:
    return int((now - offset) // interval)


def enqueue_periodic(ctx: Context, job: Periodic, now: float) -> bool:
    """Enqueue this slot's run if no process did yet; True if this call enqueued it."""
    interval = job.interval_s(ctx.settings)
    slot = slot_of(now, interval, job.offset_s(ctx.settings))
    if not ctx.client.set(job_tick_key(job.name, slot), str(os.getpid()), nx=True,
                          ex=max(2 * interval, 60)):
        return False
    try:
        queue(ctx).enqueue(job.func, job_id=f"{job.name}-{slot}", unique=True,
                           job_timeout=job.timeout_s, result_ttl=max(interval, 60),
                           description=f"{job.name} (slot {slot})")
    except DuplicateJobError:
        return False
    log.info("enqueued %s for slot %d", job.name, slot)
    return True


class Ticker:
    def __init__(self, ctx: Context, clock: Callable[[], float] = time.time):
        self.ctx = ctx
        self.clock = clock
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.worker: JobsWorker | None = None  # the rq worker at work, whose scheduler it watches
        self._scheduler_checked = 0.0

    def tick(self) -> None:
        now = self.clock()
        for job in PERIODIC:
            enqueue_periodic(self.ctx, job, now)
        dispatch_publishes(self.ctx)

    def check_scheduler(self) -> bool:
        """Every ``SCHEDULER_CHECK_S``: restart the rq worker's scheduler if it died."""
        worker, now = self.worker, time.monotonic()
        if worker is None or now - self._scheduler_checked < SCHEDULER_CHECK_S:
            return False
        self._scheduler_checked = now
        return worker.restart_dead_scheduler()

    def run(self) -> None:
        poll = self.ctx.settings.notify_poll_ms / 1000
        while not self.stopped.is_set():
            try:
                self.tick()
                self.check_scheduler()  # after a tick: Redis answers
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("ticker: redis error (%s); trying again", exc)
            except Exception:
                log.exception("ticker: tick failed")
            self.stopped.wait(poll)

    def start(self) -> Ticker:
        self.thread = threading.Thread(target=self.run, name="slotlock-ticker", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout)


def stop_asked(worker: HerokuWorker) -> bool:
    """SIGTERM/SIGINT reached rq's handler (it notes the date of every stop request)."""
    return worker._shutdown_requested_date is not None or worker._stop_requested


class JobsWorker(HerokuWorker):
    """rq's Heroku-style worker whose scheduler process is restarted within seconds.

    rq's scheduler process dies on any Redis error (its loop catches none: a refused
    connection, ``BusyLoadingError`` while redis-server loads after a restart) and rq
    restarts it only in its worker's maintenance, which runs when the worker's loop comes
    round (after a job, or when an idle dequeue times out: ~7 minutes) and at most every
    ``MAINTENANCE_S``: retries of refused deliveries waited that long (found by the fault
    harness; the newest scheduler was a zombie). The ticker calls
    ``restart_dead_scheduler`` every ``SCHEDULER_CHECK_S`` instead, which does what rq's
    maintenance does. A guard keeps it from racing the scheduler's first start and that
    maintenance (two schedulers: the orphan kept the process from exiting) or the
    worker's teardown (restarting a scheduler being stopped).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scheduler_guard = threading.Lock()
        self._tearing_down = False

    def _start_scheduler(self, *args, **kwargs):
        # the scheduler exists before its process: unguarded, the ticker started a second
        with self._scheduler_guard:
            super()._start_scheduler(*args, **kwargs)

    def run_maintenance_tasks(self):
        with self._scheduler_guard:
            super().run_maintenance_tasks()

    def subscribe(self):
        """rq's, but its pubsub thread waits for a message 1 s at a time, not 60: rq's
        teardown joins that thread (redis-py 8 ``stop()`` waits for it), and after a Redis
        fault nothing woke it, so a quitting worker hung up to a minute with neither a
        worker nor a scheduler (found by tests/faults/test_jobs_survive.py under load)."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAIT_S, daemon=True, exception_handler=self._pubsub_exception_handler)

    def teardown(self):
        if not self.is_horse:
            with self._scheduler_guard:
                self._tearing_down = True
        super().teardown()

    def restart_dead_scheduler(self) -> bool:
        """Start the scheduler again if its process died (rq's way: ``acquire_locks`` with
        ``auto_start``: the lock, still under the scheduler's name, is refreshed; one that
        expired is taken again; one another process's scheduler holds is left to it).
        True if a scheduler process was started."""
        if not self._scheduler_guard.acquire(blocking=False):
            return False  # rq's maintenance or the teardown is at it
        try:
            scheduler = self.scheduler
            if scheduler is None or self._tearing_down or stop_asked(self):
                return False
            dead = scheduler._process
            if dead is not None and dead.is_alive():
                return False
            scheduler.acquire_locks(auto_start=True)
            started = scheduler._process is not dead and scheduler._process is not None
            if started and dead is not None:
                log.warning("rq's scheduler process %s died (exit code %s); restarted it",
                            dead.pid, dead.exitcode)
            return started
        finally:
            self._scheduler_guard.release()


def release_dead_scheduler_lock(ctx: Context, worker: HerokuWorker) -> bool | None:
    """Free the scheduler lock of a quit rq worker whose scheduler process is dead.

    Without this the next worker cannot start a scheduler until the stale lock expires
    (a minute or more), and every job waiting for a retry (a refused webhook delivery)
    waits that long: events looked lost (found by the fault harness: a Redis restart
    killed the scheduler while it held its lock). Only our own lock value is removed.
    None if Redis did not answer (try again).
    """
    scheduler = getattr(worker, "scheduler", None)
    if scheduler is None or (scheduler._process is not None and scheduler._process.is_alive()):
        return False
    key = RQScheduler.get_locking_key(QUEUE)
    try:
        freed = bool(Scripts(ctx.rq).delete_if_equal(keys=[key], args=[scheduler.name]))
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    if freed:
        log.warning("released the scheduler lock of the rq worker that quit")
    return freed


def run(settings: Settings, *, burst: bool = False) -> int:
    """The ``slotlock jobs`` process. SIGTERM: warm stop (rq's handler), ticker stops too.

    rq's worker quits (returns) on an error it does not handle, e.g. Redis restarting
    under it; unless a stop was asked for, a new rq worker takes over after a second, so a
    Redis fault does not end notifications and audits (found by the fault harness)."""
    ctx = configure(settings)
    # The ticker gets its own clients: the work horse is forked from this process.
    ticker = Ticker(Context(settings, data_connection(settings), rq_connection(settings),
                            os.getpid()))
    ticker.start()
    generation = 0
    try:
        while True:
            name = f"slotlock-jobs-{settings.worker_id}" + (f"-{generation}" if generation else "")
            try:
                worker = make_worker(ctx, worker_class=JobsWorker, name=name,
                                     maintenance_interval=MAINTENANCE_S)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # rq's worker names itself in Redis as it is made: Redis may still be down
                log.warning("rq worker: cannot start yet, redis error (%s); again in 1 s", exc)
                time.sleep(1)
                continue
            if not burst:
                ticker.worker = worker  # restarts its scheduler if it dies
            try:
                worker.work(with_scheduler=True, burst=burst,
                            logging_level=os.environ.get("SLOTLOCK_LOG_LEVEL", "INFO").upper())
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("rq worker: redis error (%s)", exc)
            finally:
                ticker.worker = None
            if burst or stop_asked(worker):
                break
            log.warning("the rq worker quit without being asked to; starting another in 1 s")
            time.sleep(1)
            # until Redis answers: the next worker cannot make itself before that anyway
            while release_dead_scheduler_lock(ctx, worker) is None and not stop_asked(worker):
                time.sleep(1)
            if stop_asked(worker):
                break
            generation += 1
    finally:
        ticker.stop()
    return 0
