"""Measure how gunicorn worker classes hold up against slow clients (README, "Web threads").

    PYTHONPATH=src python3 bench/slow_clients.py

For each web line: a private stack (redis-server, gunicorn on loopback, one lease worker),
160 connections that drip their request a byte every 0.5 s (half the head, half the body),
then five GET /readyz one after the other; prints each one's latency (30 s = gave up).
Traffic stays on 127.0.0.1; every process is stopped by its pid.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e import http_stack
from tests.security.test_thread_exhaustion import BOOKINGS, Drip

BASE = "gunicorn 'slotlock.web:create_app()' --bind 0.0.0.0:${PORT:-8000} --workers 2 "
LINES = {
    "gthread (stock), --threads 16": BASE + "--worker-class gthread --threads 16 --timeout 30",
    "sync, --timeout 10": BASE + "--worker-class sync --timeout 10",
    "BufferedThreadWorker (Procfile)": http_stack.procfile_line("web"),
}


def measure(name: str, line: str) -> None:
    http_stack.procfile_line = lambda _name: line
    with http_stack.HttpStack(Path(tempfile.mkdtemp()), workers=1) as stack:
        token = stack.token("bench")
        head = (f"POST {BOOKINGS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                "\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n").encode()
        body = b"{" + b" " * 399
        payloads = [(head[:20], head[20:] + body)] * 80 + [(head, body)] * 80
        with Drip(stack.port, payloads, limit_s=60):
            time.sleep(1.5)
            took = []
            for _ in range(5):
                started = time.monotonic()
                try:
                    requests.get(stack.url + "/readyz", timeout=30)
                except requests.RequestException:
                    pass
                took.append(round(time.monotonic() - started, 2))
        print(f"{name:36} /readyz latencies under 160 slow clients: {took} s", flush=True)


if __name__ == "__main__":
    for name, line in LINES.items():
        measure(name, line)
