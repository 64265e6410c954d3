"""A webhook receiver on loopback: records every event it is sent, sometimes refuses one.

A seeded share of deliveries is answered 503 without being kept (the publisher must send
it again) and another share is kept but answered 500 (it will arrive twice: receivers
dedup by event id). The checker (``checker.check_webhook``) then asks: did every accepted
booking and cancel arrive at least once, and did each day's events first arrive in
stream order?
"""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/chaos-hook"


class WebhookReceiver:
    def __init__(self, seed: int, refuse: float = 0.04, keep_and_fail: float = 0.02):
        self.rng = random.Random(seed)
        self.refuse = refuse
        self.keep_and_fail = keep_and_fail
        self.received: list[dict] = []
        self.refused = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.take(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"

    def take(self, body: bytes) -> int:
        with self.lock:
            draw = self.rng.random()
            if draw < self.refuse:
                self.refused += 1
                return 503
            self.received.append(json.loads(body))
            return 500 if draw < self.refuse + self.keep_and_fail else 200

    def events(self) -> list[dict]:
        with self.lock:
            return list(self.received)

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
