"""The daemon: one asyncio process serving protocol v1 on a Unix socket.

This module is the daemon's lifecycle and its dispatch: it binds (or takes from systemd) the
socket, starts the pieces, routes each request line to its handler, and stops cleanly. The
pieces, each owning one job (docs/architecture.md):

* :mod:`gatekeeper.connections` — accepting, framing, back-pressure, limits;
* :mod:`gatekeeper.policystore` — the agents, reloads, a human's "always";
* :mod:`gatekeeper.runs` — check, run, ask, execute, answer, and the audit records;
* :mod:`gatekeeper.analysis_worker` — commands analysed and confirmed off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import stat
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper import __version__
from gatekeeper.analysis_worker import AnalysisPool
from gatekeeper.approval import Approvals, HumanAnswer
from gatekeeper.audit import AuditLog, FsyncPolicy
from gatekeeper.connections import Budget, Conn, ConnectionProtocol, Limits, Listener
from gatekeeper.errors import GatekeeperError
from gatekeeper.executor import Guardian
from gatekeeper.policystore import PolicyStore
from gatekeeper.protocol import (
    VERSION,
    Answer,
    Cancel,
    Check,
    ProtocolError,
    Request,
    Run,
    error_reply,
    event,
    parse_request,
)
from gatekeeper.runs import Requests, RunState
from gatekeeper.sinks import SinkConfig, Sinks
from gatekeeper.sources import OpencodeSources
from gatekeeper.systemd import Notifier, inherited_socket

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServeConfig:
    """Everything ``gatekeeper serve`` can be told; separate from the server that uses it."""

    socket_path: Path
    policy_dir: Path
    default_agent: str | None = "default"
    audit_log: Path | None = None
    audit_fsync: FsyncPolicy = "batch"
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_keep: int = 20
    approval_timeout: float = 120.0
    grace: float = 5.0
    approvers_need_tty: bool = True
    watch_interval: float = 1.0
    listen_socket: socket.socket | None = None  # handed over by systemd (LISTEN_FDS)
    max_connections: int = 1000
    max_buffered: int = 64 << 20
    idle_line_timeout: float = 30.0
    audit_sinks: tuple[SinkConfig, ...] = ()  # where records go after the local log
    opencode: OpencodeSources | None = None  # serve opencode's agents, merged from its sources


class Daemon:
    def __init__(self, config: ServeConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier("")
        self.store = PolicyStore(config.policy_dir, config.default_agent, opencode=config.opencode)
        # Commands are parsed (and allows confirmed) in worker processes: a parser crash
        # costs one "ask", not the daemon, and no parser ever runs on the event loop.
        self.analyser = AnalysisPool()
        self.approvals = Approvals()
        self.audit: AuditLog | None = None
        self.sinks = Sinks(config.audit_sinks) if config.audit_sinks else None
        self.guardian = Guardian()
        self.requests = Requests(
            self.store,
            self.analyser,
            self.approvals,
            self.guardian,
            audit=lambda: self.audit,
            approval_timeout=config.approval_timeout,
            approvers_need_tty=config.approvers_need_tty,
        )
        self.limits = Limits(config.max_connections, config.max_buffered, config.idle_line_timeout)
        self.budget = Budget(self.limits.max_buffered)
        self.connections: set[Conn] = set()
        self._protocols: weakref.WeakSet[ConnectionProtocol] = weakref.WeakSet()
        self._listener: Listener | None = None
        self._socket_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self.started = time.monotonic()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._owns_socket = config.listen_socket is None

    # -- policies -----------------------------------------------------------------------------

    @property
    def policies(self) -> dict[str, Any]:
        return self.store.policies

    def reload(self) -> str | None:
        """Reload; on error keep the policies running and return why."""
        self.notifier.reloading()
        error = self.store.reload()
        self.requests.forget_replies()
        if error is not None:
            self.notifier.ready(f"reload FAILED, previous policies in use: {error}")
        else:
            self.notifier.ready(self.summary())
        return error

    def summary(self) -> str:
        """One line for systemctl status."""
        return (
            f"serving {len(self.store.policies)} agent(s) on {self.config.socket_path}; "
            f"{len(self.approvals.items)} pending, {len(self.requests.executions)} running"
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch_interval)
            if self.store.changed():
                self.reload()

    async def _sweep(self) -> None:
        """Close connections whose unfinished request line stopped moving."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for proto in list(self._protocols):
                proto.idle(now)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.store.load()
        if self.config.audit_log is not None and self.audit is None:
            self.audit = AuditLog(
                self.config.audit_log,
                fsync=self.config.audit_fsync,
                max_bytes=self.config.audit_max_bytes,
                keep=self.config.audit_keep,
            )
            if self.sinks is not None:
                # Each record goes to the sinks once it is written (off the request path).
                self.sinks.start()
                self.audit.on_record = self.sinks.post
            self.audit.begin(pid=os.getpid(), version=__version__)
            if self.audit.previous == "crashed":
                log.warning(
                    "the previous daemon did not stop cleanly; runs with no outcome: %s",
                    ", ".join(map(str, self.audit.unfinished)) or "none",
                )
            if self.audit.last_error:
                log.error(
                    "audit log: %s (requests fail until it can be written)",
                    self.audit.last_error,
                )
        elif self.sinks is not None and self.audit is None:
            log.warning("audit_sinks are configured but the audit log is off: nothing is sent")
        loop = asyncio.get_running_loop()
        sock = self.config.listen_socket or self._bind()
        self._listener = Listener(sock, self._protocol, self.limits)
        self._listener.start()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._sweep())]
        self.analyser.start()
        log.info("listening on %s", self.config.socket_path)
        self.notifier.ready(self.summary())

    def _protocol(self) -> ConnectionProtocol:
        proto = ConnectionProtocol(self, self.budget, self.limits)
        self._protocols.add(proto)
        return proto

    def _bind(self) -> socket.socket:
        path = self.config.socket_path
        directory = path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
        if st.st_uid != os.getuid():
            raise GatekeeperError(f"{directory} belongs to another user: choose another --socket")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(directory, 0o700)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise GatekeeperError(
                    f"{path} exists and is not a socket: remove it or choose another --socket"
                )
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
                path.unlink(missing_ok=True)  # stale: its daemon is dead
            else:
                raise GatekeeperError(f"already running: a daemon is listening on {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        st = path.lstat()
        self._socket_id = (st.st_dev, st.st_ino)
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def serve_until_stopped(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig, handler in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.reload),
        ):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        try:
            await self._stopping.wait()
            await self.stop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Stop accepting, let runs finish for the grace period, kill the rest, clean up."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stopping.set()
        self.notifier.stopping()
        if self._listener is not None:
            self._listener.close()
        for task in self._tasks:
            task.cancel()
        for key in list(self.approvals.items):
            self.approvals.resolve(key, HumanAnswer("cancelled", message="the daemon stopped"))
        executions = self.requests.executions
        deadline = time.monotonic() + self.config.grace
        while executions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for execution in list(executions.values()):
            execution.kill("daemon shutdown")
        tasks = [t for c in self.connections for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        for conn in list(self.connections):
            conn.closed = True
            conn.transport.close()
        self._remove_socket()
        if self.audit is not None:
            self.audit.end()
            self.audit.close()
        if self.sinks is not None:
            await asyncio.to_thread(self.sinks.close, 2.0)  # what is queued, briefly
        await self.analyser.close()

    def _remove_socket(self) -> None:
        """Remove our socket file — only if it still is ours: a newer daemon may have taken
        the path, and its socket must stay."""
        if not self._owns_socket or self._socket_id is None:
            return
        path = self.config.socket_path
        with contextlib.suppress(OSError):
            st = path.lstat()
            if (st.st_dev, st.st_ino) == self._socket_id:
                path.unlink()
            else:
                log.info("%s is another daemon's socket now: left in place", path)

    # -- connections --------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def connected(self, conn: Conn) -> None:
        self.connections.add(conn)

    def forget(self, conn: Conn) -> None:
        """The connection is gone: its runs die, its subscription ends."""
        conn.closed = True
        self.connections.discard(conn)
        if conn.subscription is not None:
            self.approvals.unsubscribe(conn.subscription)
            conn.subscription = None
        for state in list(conn.runs.values()):
            self.requests.cancel(state, "the client disconnected")
        conn.writable.set()

    def on_line(self, conn: Conn, line: bytes) -> None:
        """Serve one request line: quick ops answer at once, the rest get a task."""
        try:
            req = parse_request(line)
        except ProtocolError as exc:
            conn.write(exc.reply())
            return
        try:
            self._dispatch(conn, req)
        except ProtocolError as exc:
            conn.write(exc.reply())
        except Exception:  # the daemon must survive any one bad request
            log.exception("internal error on %r", line[:200])
            conn.write(error_reply(req.id, "internal", "internal error; see the daemon log"))

    def _dispatch(self, conn: Conn, req: Request) -> None:
        requests = self.requests
        if isinstance(req, Run) or (isinstance(req, Check) and req.wait):
            if req.id in conn.runs:
                raise ProtocolError(
                    "bad_request", f"a request with id {req.id!r} is in flight", req.id
                )
            state = RunState(req.id)
            conn.runs[req.id] = state
            if isinstance(req, Run):
                conn.spawn(requests.run_guarded(conn, req, state))
            else:
                conn.spawn(requests.check_and_wait(conn, req, state))
            return
        if isinstance(req, Check):
            now = requests.check_now(conn, req)
            if now is not None:
                conn.write_raw(now)
            else:
                conn.spawn(requests.check_later(conn, req))
            return
        if isinstance(req, Cancel):
            target = conn.runs.get(req.target)
            if target is None:
                raise ProtocolError(
                    "not_found", f"no run with id {req.target!r} on this connection", req.id
                )
            requests.cancel(target, "cancelled by the client")
            conn.write({"id": req.id, "ok": True})
            return
        if isinstance(req, Answer):
            conn.write(requests.answer(conn, req))
            return
        conn.write(self._simple(conn, req))

    def _simple(self, conn: Conn, req: Request) -> dict[str, Any]:
        rid = req.id
        if req.op == "status":
            audit = self.audit
            return {
                "id": rid,
                "version": __version__,
                "protocol": VERSION,
                "agents": sorted(self.store.policies),
                "default_agent": self.config.default_agent,
                "pending": len(self.approvals.items),
                "approvers": self.approvals.approvers,
                "runs": len(self.requests.executions),
                "connections": len(self.connections),
                "uptime_s": round(time.monotonic() - self.started, 3),
                "policy_dir": str(self.config.policy_dir),
                "reload_error": self.store.reload_error,
                "audit_error": audit.last_error if audit is not None else None,
                "audit_sinks": self.sinks.stats() if self.sinks is not None else [],
            }
        if req.op == "reload":
            error = self.reload()
            if error is not None:
                raise ProtocolError(
                    "policy_error", f"reload failed, the previous policies stay: {error}", rid
                )
            return {"id": rid, "ok": True, "agents": sorted(self.store.policies)}
        if req.op == "pending":
            return {"id": rid, "pending": [p.to_json() for p in self.approvals.items.values()]}
        if req.op == "subscribe":
            if conn.subscription is None:
                conn.subscription = self.approvals.subscribe(
                    lambda name, body: conn.write(event(rid, name, **body))
                )
            return {"id": rid, "ok": True}
        raise ProtocolError("unknown_op", f"unknown op {req.op!r}", rid)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit (a systemd user service starts
    at 1,024); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def serve(config: ServeConfig) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; exit status 0 on a clean stop.

    Under systemd it takes the socket of gatekeeper.socket (LISTEN_FDS) and reports its state
    (NOTIFY_SOCKET).
    """
    if config.listen_socket is None:
        config.listen_socket = inherited_socket()
    limit = raise_fd_limit()
    # Keep room for the runs' pipes, the workers, the audit log and /proc reads: a quarter of
    # the descriptors (at least 64) are never given to connections.
    config.max_connections = max(16, min(config.max_connections, limit - max(64, limit // 4)))
    daemon = Daemon(config, Notifier())
    daemon.guardian.start()

    async def main() -> None:
        await daemon.start()
        await daemon.serve_until_stopped()

    try:
        asyncio.run(main())
    finally:
        daemon.guardian.stop()
    return 0
