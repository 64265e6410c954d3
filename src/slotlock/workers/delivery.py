"""One webhook POST that cannot be turned against the network slotlock runs in.

urllib3 (not ``urllib.request``) because it lets us own the connection step:

- the host name is resolved once; if any address it gives is loopback, private,
  link-local (cloud metadata), multicast or reserved, nothing is connected at all; the
  socket then connects to one of the checked addresses, and the peer address of the
  connected socket is checked again. TLS SNI, certificate checks and ``Host`` still use
  the name. A DNS answer that changes between a check and a connect cannot slip through.
- no redirects are followed, and a 3xx is a failed delivery (never "delivered");
- no proxies from the environment;
- one deadline for the whole delivery (connect, TLS, send, the answer's status line and
  headers): a watchdog shuts the socket down when it passes, however slowly a receiver
  drips its answer. Name resolution before it is the system resolver's, with its own
  timeouts.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import make_headers, parse_url

from ..webhooks import Policy, WebhookRefused, address_refusal, check_url

# urllib3 logs each request line, path and query included, at DEBUG: webhook paths and
# queries often carry the receiver's token, so that logger never goes below INFO.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


class PostFailed(Exception):
    """The receiver did not take the request; ``reason`` never holds the URL's path or query."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def resolve(host: str, port: int) -> list[tuple]:
    """``getaddrinfo`` for TCP; a module function so tests can give a host any address."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def connect(address: tuple, timeout: float | None, options) -> socket.socket:
    """Connect to an address already checked (a module function, so tests can watch it)."""
    return urllib3.util.connection.create_connection(address, timeout,
                                                     socket_options=options)


class Watchdog:
    """Shuts the delivery's socket down once its deadline passes."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._timers: list[threading.Timer] = []

    def arm(self, sock: socket.socket) -> None:
        def expire() -> None:
            self.expired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


class _Guarded:
    """The connection step of both connection classes below."""

    def __init__(self, *args, policy: Policy, watchdog: Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.watchdog = watchdog

    def _new_conn(self) -> socket.socket:
        try:
            infos = resolve(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise PostFailed(f"cannot resolve {self.host}: {exc}") from None
        for info in infos:
            reason = address_refusal(info[4][0], self.policy)
            if reason:
                raise WebhookRefused(f"{self.host} resolves to {info[4][0]}, {reason}")
        error: OSError | None = None
        for info in infos:
            try:
                timeout = max(0.001, self.watchdog.deadline - time.monotonic())
                if isinstance(self.timeout, int | float):
                    timeout = min(timeout, self.timeout)
                sock = connect(info[4][:2], timeout, self.socket_options)
                break
            except OSError as exc:
                error = exc
        else:
            raise PostFailed(f"cannot connect to {self.host}: {error}")
        peer = sock.getpeername()[0]
        reason = address_refusal(peer, self.policy)
        if reason:
            sock.close()
            raise WebhookRefused(f"{self.host} connected to {peer}, {reason}")
        self.watchdog.arm(sock)
        return sock


class _HTTPConnection(_Guarded, HTTPConnection):
    pass


class _HTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, policy: Policy) -> int:
    """POST ``body``; the 2xx status, or PostFailed / WebhookRefused with a loggable reason."""
    check_url(url, policy)
    parts = parse_url(url)
    target = parts.request_uri
    headers = dict(headers)
    if parts.auth:
        headers.update(make_headers(basic_auth=parts.auth))
    watchdog = Watchdog(timeout)
    pool_class = _HTTPSPool if parts.scheme == "https" else _HTTPPool
    pool = pool_class(parts.host, parts.port, timeout=urllib3.Timeout(connect=timeout,
                                                                       read=timeout),
                      retries=False, maxsize=1, policy=policy, watchdog=watchdog)
    try:
        response = pool.urlopen("POST", target, body=body, headers=headers, redirect=False,
                                retries=False, preload_content=False, assert_same_host=False)
        status = response.status
        response.release_conn()
    except (WebhookRefused, PostFailed):
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if watchdog.expired:
            raise PostFailed(f"no answer within the delivery deadline of {timeout:g} s") from None
        detail = str(exc).replace(target, "/…") if target not in ("", "/") else str(exc)
        raise PostFailed(f"{type(exc).__name__}: {detail}") from None
    finally:
        watchdog.cancel()
        pool.close()
    if watchdog.expired:
        raise PostFailed(f"no answer within the delivery deadline of {timeout:g} s")
    if 300 <= status < 400:
        raise PostFailed(f"HTTP {status}: redirects are not followed; set the final URL")
    if not 200 <= status < 300:
        raise PostFailed(f"HTTP {status}")
    return status
