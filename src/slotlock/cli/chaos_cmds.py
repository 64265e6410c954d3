"""``slotlock chaos``: the fault harness as one dev command (see README, Guarantees under faults)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

from .core import main


@main.command()
@click.option("--duration", default=60.0, show_default=True, help="seconds of faults and load")
@click.option("--seed", default=1, show_default=True, help="seeds the fault schedule and clients")
@click.option("--fault-rate", default=0.25, show_default=True, help="faults per second")
@click.option("--workers", default=3, show_default=True, help="lease worker processes")
@click.option("--webs", default=2, show_default=True, help="web (gunicorn) processes")
@click.option("--clients", default=8, show_default=True, help="concurrent client threads")
@click.option("--days", default=3, show_default=True, help="calendar-days the clients book on")
@click.option("--lease-ttl-ms", default=1000, show_default=True)
@click.option("--think", default=0.0, show_default=True,
              help="up to this many seconds of pause between a client's operations")
@click.option("--appendfsync", type=click.Choice(["always", "everysec", "no"]),
              default="always", show_default=True)
@click.option("--only", multiple=True, help="inject only these fault kinds (repeatable)")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="where logs, history.jsonl and report.json go (default: a new temp dir)")
def chaos(duration, seed, fault_rate, workers, webs, clients, days, lease_ttl_ms, think,
          appendfsync, only, run_dir) -> None:
    """Run the fault harness against real processes and check the history.

    Exit status 0 only if the checker found no anomaly.
    """
    from ..chaos.faults import KINDS
    from ..chaos.harness import RunConfig, run

    kinds = dict(KINDS)
    if only:
        unknown = set(only) - set(KINDS)
        if unknown:
            raise click.BadParameter(f"unknown fault kinds {sorted(unknown)}; "
                                     f"known: {sorted(KINDS)}", param_hint="--only")
        kinds = {k: w for k, w in KINDS.items() if k in only}
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix=f"slotlock-chaos-{seed}-"))
    config = RunConfig(run_dir=run_dir, duration_s=duration, seed=seed, fault_rate=fault_rate,
                       workers=workers, webs=webs, clients=clients, days=days,
                       lease_ttl_ms=lease_ttl_ms, kinds=kinds, appendfsync=appendfsync,
                       think_s=think)
    started = time.monotonic()
    report = run(config, log=lambda line: click.echo(line, err=True))
    click.echo(report.summary())
    click.echo(f"wall time {time.monotonic() - started:.0f} s")
    sys.exit(1 if report.anomaly_count else 0)
