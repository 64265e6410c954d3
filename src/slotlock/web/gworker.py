"""gunicorn's gthread worker with a buffering front: no thread waits for a slow client.

Stock gthread hands a connection to a thread as soon as its first byte arrives; the
thread then reads the rest of the request with a blocking socket and no timeout, so a
client that sends one byte a second holds a thread for as long as it likes, and
``--threads`` such clients stop the process answering anyone (``--timeout`` does not
help: the main loop keeps the worker alive). Here the main thread, which polls the
sockets anyway, reads each request without blocking into a small buffer and hands the
connection to a thread only once the request is complete:

    accept ─ poll ─ read what is there ─ complete? ── no ─ back to the poller (no thread)
                      │                     │ yes
                      │ deadline passed: close (408)  └─ thread: parse from the buffer, run app

- complete = the head (up to its blank line) and its whole body, by ``Content-Length``
  or chunk by chunk (a client that asks ``Expect: 100-continue`` gets its 100 from the
  main thread); only a request larger than ``BUFFER_LIMIT`` (far over
  ``SLOTLOCK_MAX_BODY_BYTES``: a 413 or a 400) goes to a thread before it is complete;
- every connection must deliver a whole request within ``SLOTLOCK_REQUEST_READ_TIMEOUT_S``
  of its first poll (accept, or the previous answer on a kept-alive connection), or it is
  closed; a thread's reads and writes time out after the same time;
- TLS terminated by gunicorn itself (``--certfile``) is left to stock gthread (the bytes
  here would be TLS records): terminate TLS in front of slotlock, as the README says.
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

from ..config import Settings

BUFFER_LIMIT = 64 * 1024
HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r\n",
                            re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)
# a client that asked "Expect: 100-continue" waits for the thread's 100 before its body
EXPECT = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue", re.IGNORECASE)
TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                  b"Content-Length: 0\r\n\r\n")


class ReplaySocket:
    """The client socket, replaying the bytes the main thread read ahead before the rest."""

    def __init__(self, sock: socket.socket):
        self.raw = sock
        self.pending = bytearray()

    def recv(self, size: int) -> bytes:
        if self.pending:
            data = bytes(self.pending[:size])
            del self.pending[:size]
            return data
        return self.raw.recv(size)

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


def head_of(buffer: bytes | bytearray) -> bytes | None:
    end = buffer.find(HEAD_END)
    return None if end < 0 else bytes(buffer[:end + 2])


def chunked_body_complete(body: bytes) -> bool:
    """True once ``body`` holds every chunk, the last (empty) one and the trailer's end."""
    pos = 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return False
        size_text = body[pos:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16) if 0 < len(size_text) <= 16 else -1
        except ValueError:
            size = -1
        if size < 0:
            return True  # malformed: gunicorn's parser answers 400
        if size == 0:
            rest = body[line_end + 2:]
            return rest.startswith(b"\r\n") or b"\r\n\r\n" in rest
        pos = line_end + 2 + size + 2
        if pos > len(body):
            return False


def request_complete(buffer: bytes | bytearray) -> bool:
    """True once a thread can parse the request without waiting on the client."""
    head = head_of(buffer)
    if head is None:
        return len(buffer) >= BUFFER_LIMIT  # let the parser refuse an oversized head
    body = bytes(buffer[len(head) + 2:])
    if len(buffer) >= BUFFER_LIMIT:
        return True  # more than any body slotlock takes: the app answers 413
    if CHUNKED.search(head):
        return chunked_body_complete(body)
    match = CONTENT_LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    return length > BUFFER_LIMIT or len(body) >= length


class BufferedConn(TConn):
    def __init__(self, cfg, sock, client, server, read_timeout: float):
        super().__init__(cfg, ReplaySocket(sock), client, server)
        self.read_timeout = read_timeout
        self.deadline = time.monotonic() + read_timeout
        self.continued = False  # a 100 Continue was sent for the request being read

    def init(self) -> None:
        super().init()
        self.sock.settimeout(self.read_timeout)  # the thread's reads and writes


class BufferedThreadWorker(ThreadWorker):
    """``gunicorn -k slotlock.web.gworker.BufferedThreadWorker``; see the module doc."""

    def init_process(self) -> None:
        self.read_timeout = Settings().request_read_timeout_s
        self._reading: set[BufferedConn] = set()
        super().init_process()

    def accept(self, server, listener) -> None:
        if self.cfg.is_ssl:
            return super().accept(server, listener)
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = BufferedConn(self.cfg, sock, client, server, self.read_timeout)
        self.nr_conns += 1
        with self._lock:
            self._reading.add(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self.on_client_socket_readable, conn))

    def on_client_socket_readable(self, conn, client) -> None:
        if not isinstance(conn, BufferedConn):
            return super().on_client_socket_readable(conn, client)
        with self._lock:
            if conn not in self._reading:  # a kept-alive connection speaks again
                try:
                    self._keep.remove(conn)
                except ValueError:
                    return
                conn.deadline = time.monotonic() + self.read_timeout
                self._reading.add(conn)
        try:
            data = conn.sock.raw.recv(BUFFER_LIMIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data and not conn.sock.pending:
            self._drop(conn)  # closed before sending anything
            return
        conn.sock.pending += data
        if data and not request_complete(conn.sock.pending):
            self._continue_if_asked(conn)
            return  # stay in the poller: no thread waits for the rest
        conn.continued = False
        with self._lock:
            self._reading.discard(conn)
            self.poller.unregister(client)
        self.enqueue_req(conn)

    @staticmethod
    def _continue_if_asked(conn: BufferedConn) -> None:
        """A client that sent ``Expect: 100-continue`` waits for a 100 before its body: give
        it here, so the body is buffered like any other (gunicorn's thread sends a second
        100 later, which HTTP/1.1 clients ignore)."""
        if conn.continued:
            return
        head = head_of(conn.sock.pending)
        if head is not None and EXPECT.search(head):
            conn.continued = True
            try:
                conn.sock.raw.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        now = time.monotonic()
        with self._lock:
            expired = [c for c in self._reading if c.deadline <= now]
        for conn in expired:
            try:
                conn.sock.raw.send(TIMEOUT_ANSWER)
            except OSError:
                pass
            self._drop(conn)

    def _drop(self, conn: BufferedConn) -> None:
        with self._lock:
            self._reading.discard(conn)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.nr_conns -= 1
        conn.close()
