"""The ``slotlock`` group and what every command needs: settings and a Redis, or a clear exit."""

from __future__ import annotations

import click
import redis
from pydantic import ValidationError

from ..config import Settings, redacted_url
from ..errors import UnsuitableRedis
from ..legacy_keys import check_migrated
from ..redis_conn import MAY_HAVE_RUN, check_not_cluster, connect, use_cluster


def settings_or_exit(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # Each error names its variable, never its value (hide_input_in_errors).
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                 for e in exc.errors()]
        raise click.ClickException("bad configuration:\n" + "\n".join(lines)) from exc


def redis_or_exit(settings: Settings, *, migrated: bool = True) -> redis.Redis:
    """A client of the configured Redis, which answers and is not a Redis Cluster (unless
    ``SLOTLOCK_REDIS_CLUSTER=on``: then the cluster client); with
    ``migrated`` (all but ``slotlock migrate``), holding no data of an earlier release
    that ``slotlock migrate`` has not moved yet (a command would not see it, and a
    ``calendar put`` would hide it)."""
    try:
        client = connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms,
                         cluster=use_cluster(settings))
        client.ping()
        check_not_cluster(client, settings.redis_cluster)
        if migrated:
            check_migrated(client)
    except MAY_HAVE_RUN as exc:
        raise click.ClickException(f"Redis at {redacted_url(settings.redis_url)} is unreachable: {exc}") from exc
    except UnsuitableRedis as exc:
        raise click.ClickException(str(exc)) from exc
    return client


@click.group()
@click.version_option(package_name="slotlock")
def main() -> None:
    """slotlock: bookings that stay correct while processes crash, pause and redeploy."""


if __name__ == "__main__":
    from . import main as _all_commands  # noqa: F401  (registers every area's commands)

    main()
