"""Connections: accepting them, framing their lines, back-pressure, and the limits that keep
one client (or a thousand) from taking the daemon down.

* :class:`Listener` accepts on the listening socket itself (not asyncio's server): it can answer
  a connection it must refuse — too many open, or no file descriptor left (``EMFILE``, found by
  keeping one descriptor in reserve) — with a ``busy`` error instead of leaving it unanswered,
  and it says so in the log once a minute, not once per connection.
* :class:`ConnectionProtocol` frames each connection's lines (:class:`~gatekeeper.protocol.
  LineDecoder`), holds the unfinished line of each within a budget shared by all connections,
  closes a connection whose unfinished line stopped moving, and pauses reading from a client
  that does not read its replies.
* :class:`Conn` is one connection's state, and the way replies are written to it.

What a line *means* is not decided here: :class:`Handler` (the daemon) gets each line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

from gatekeeper.protocol import LineDecoder, ProtocolError, encode, error_reply

log = logging.getLogger(__name__)

_HIGH_WATER = 256 * 1024  # bytes queued for a client before its writers wait for it


@dataclass(frozen=True, slots=True)
class Limits:
    """How much the daemon takes from its clients."""

    max_connections: int = 1000  # open at once; more are answered `busy` and closed
    max_buffered: int = 64 << 20  # bytes of unfinished request lines, all clients together
    idle_line_timeout: float = 30.0  # seconds an unfinished line may stand still


class Handler(Protocol):
    """What the connections need from the daemon."""

    @property
    def stopping(self) -> bool: ...

    def connected(self, conn: Conn) -> None: ...

    def on_line(self, conn: Conn, line: bytes) -> None: ...

    def forget(self, conn: Conn) -> None: ...


@dataclass(slots=True, eq=False)
class Conn:
    """One client connection: who it is, what runs on it, and how to write to it."""

    transport: asyncio.Transport
    pid: int | None
    uid: int | None
    name: str | None
    runs: dict[Any, Any] = field(default_factory=dict)  # request id → RunState (runs.py)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    subscription: int | None = None
    closed: bool = False
    writable: asyncio.Event = field(default_factory=asyncio.Event)
    client_json: bytes = b""  # `"client":{…}` for its audit records, encoded once

    def __post_init__(self) -> None:
        self.writable.set()
        client = {"pid": self.pid, "uid": self.uid, "name": self.name}
        self.client_json = b'"client":' + json.dumps(
            client, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8", "surrogatepass")

    def write(self, message: dict[str, Any]) -> None:
        """Queue one line; one write() is one whole line, so lines never interleave."""
        self.write_raw(encode(message))

    def write_raw(self, line: bytes) -> None:
        if self.closed or self.transport.is_closing():
            self.closed = True
            return
        self.transport.write(line)

    async def send(self, message: dict[str, Any]) -> None:
        """Queue one line, then wait while the client is slow to read (bounded buffering)."""
        self.write(message)
        if not self.writable.is_set() and not self.closed:
            await self.writable.wait()

    def spawn(self, work: Any) -> None:
        """Run a coroutine as a task of this connection (cancelled with it)."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def hung_up(self) -> bool:
        """Whether the peer closed its end entirely (not only its sending side)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return True
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLHUP | select.POLLERR)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


def peer_credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None, None
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


class Budget:
    """Bytes of unfinished request lines held for all connections, against one limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class ConnectionProtocol(asyncio.Protocol):
    """One client connection. Quick requests are answered inside data_received, in the same
    turn of the event loop that read them; the rest get tasks of their own."""

    def __init__(self, handler: Handler, budget: Budget, limits: Limits) -> None:
        self.handler = handler
        self.budget = budget
        self.limits = limits
        self.decoder = LineDecoder()
        self.conn: Conn | None = None
        self.held = 0  # this connection's share of the budget
        self.last_data = time.monotonic()
        self.on_lost: Callable[[], None] | None = None  # the listener's count

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # pragma: no cover - always a stream
            raise TypeError("gatekeeper serves stream sockets only")
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        pid, uid = peer_credentials(sock) if sock is not None else (None, None)
        name: str | None = None
        if pid:
            with contextlib.suppress(psutil.Error, OSError):  # OSError: out of descriptors
                name = psutil.Process(pid).name()
        conn = Conn(transport, pid, uid, name)
        self.conn = conn
        if uid != os.getuid() or self.handler.stopping:
            why = "this daemon serves only its own user" if uid != os.getuid() else "stopping"
            refuse(transport, "forbidden", why)
            conn.closed = True
            return
        self.handler.connected(conn)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        self.last_data = time.monotonic()
        try:
            for line in self.decoder.feed(data):
                if line.strip():
                    self.handler.on_line(conn, line)
        except ProtocolError as exc:  # too_large: the stream cannot be resynchronised
            conn.write(exc.reply())
            self._close()
            return
        self._account()
        if self.budget.held > self.budget.limit and self.held > 0:
            # Every connection's unfinished lines together are too much: the one that just
            # grew gives its share back. (1 MiB a line, 64 MiB in all by default.)
            conn.write(error_reply(None, "busy", "too much unfinished input: try again"))
            self._close()

    def _account(self) -> None:
        pending = self.decoder.pending
        self.budget.held += pending - self.held
        self.held = pending

    def _close(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.closed = True
            conn.transport.close()

    def idle(self, now: float) -> bool:
        """Whether an unfinished line has stood still past the limit (then it is closed)."""
        if self.held and now - self.last_data > self.limits.idle_line_timeout and self.conn:
            self.conn.write(
                error_reply(None, "timeout", "a request line was left unfinished: closing")
            )
            self._close()
            return True
        return False

    def eof_received(self) -> bool:
        conn = self.conn
        if conn is None or not conn.runs:
            return False  # nothing in flight: close
        if conn.hung_up():
            # Closed, not half-closed: its runs die now, before any of them starts.
            self.handler.forget(conn)
            return False
        # Only its sending side is shut (`socat`, `nc -N`): it still reads its runs' events.
        conn.spawn(self._linger(conn))
        return True

    async def _linger(self, conn: Conn) -> None:
        """After a half-close, let runs finish while the peer still listens; stop when it
        hangs up."""
        while conn.runs and not conn.closed and not self.handler.stopping:
            if conn.hung_up():
                break  # both directions gone: a dead client
            await asyncio.sleep(0.05)
        self.handler.forget(conn)
        conn.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.budget.held -= self.held
        self.held = 0
        if self.on_lost is not None:
            self.on_lost()
            self.on_lost = None
        if self.conn is not None:
            self.handler.forget(self.conn)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.writable.clear()
            self.conn.transport.pause_reading()  # and stop taking requests from it

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.writable.set()
            with contextlib.suppress(RuntimeError):
                self.conn.transport.resume_reading()


def refuse(transport: asyncio.BaseTransport, code: str, why: str) -> None:
    """Answer a connection with one error, then close it gently."""
    assert isinstance(transport, asyncio.Transport)  # noqa: S101 - always a stream
    transport.write(encode(error_reply(None, code, why)))
    # Half-close: the client reads the error, then EOF; what it sends is discarded
    # (closing with its request unread would reset the connection instead).
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(5, transport.close)


class OnceLogger:
    """Log a resource problem once a minute at most, with how often it happened meanwhile."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        self._count[key] = self._count.get(key, 0) + 1
        if now - self._last.get(key, -1e9) >= self.interval:
            times = self._count.pop(key)
            self._last[key] = now
            log.warning("%s%s", message, f" ({times} times since last said)" if times > 1 else "")


class Listener:
    """Accepts connections on a listening socket; refuses cleanly past the limits."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], ConnectionProtocol],
        limits: Limits,
    ) -> None:
        self.sock = sock
        self.factory = factory
        self.limits = limits
        self.open = 0  # connections accepted and not yet closed (counted at accept)
        self.once = OnceLogger()
        self._reserve: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._reserve = _open_reserve()
        self._loop.add_reader(self.sock.fileno(), self._accept_ready)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._reserve is not None:
            with contextlib.suppress(OSError):
                os.close(self._reserve)
            self._reserve = None

    def _accept_ready(self) -> None:
        for _ in range(64):  # then let others have the loop
            try:
                client, _addr = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._out_of_descriptors(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EINTR, errno.EPROTO):
                    continue
                self.once.warn("accept", f"accepting a connection failed: {exc}")
                return
            if self.open >= self.limits.max_connections:
                self.once.warn(
                    "busy", f"{self.limits.max_connections} connections open: refusing more"
                )
                _refuse_now(client, "too many connections open: try again")
                continue
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        assert self._loop is not None  # noqa: S101 - started
        client.setblocking(False)
        self.open += 1

        def made() -> ConnectionProtocol:
            proto = self.factory()
            proto.on_lost = self._closed
            return proto

        task = self._loop.create_task(self._loop.connect_accepted_socket(made, client))
        task.add_done_callback(self._setup_done)

    def _closed(self) -> None:
        self.open -= 1

    def _setup_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.open -= 1
            self.once.warn("setup", f"a connection could not be set up: {task.exception()}")

    def _out_of_descriptors(self, exc: OSError) -> None:
        """No descriptor left: give back the reserve, refuse the waiting client with it, and
        take the reserve again, so that no client waits unanswered."""
        self.once.warn("emfile", f"out of file descriptors ({exc.strerror}): refusing connections")
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        try:
            client, _addr = self.sock.accept()
        except OSError:
            pass
        else:
            _refuse_now(client, "the daemon is out of file descriptors: try again")
        self._reserve = _open_reserve()


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _refuse_now(client: socket.socket, why: str) -> None:
    """A refusal that never waits on the client: one error line, then close. What the client
    already sent is read and dropped first: closing a Unix socket with unread data would make
    the client's read fail (ECONNRESET) before it sees the error."""
    with contextlib.suppress(OSError):
        client.setblocking(False)
        client.send(encode(error_reply(None, "busy", why)))
        client.shutdown(socket.SHUT_WR)
        for _ in range(16):
            if not client.recv(65536):
                break
    with contextlib.suppress(OSError):
        client.close()
