"""The daemon: one asyncio process serving protocol v1 on a Unix socket.

Thin I/O around the pure core: it reads lines, lets :mod:`gatekeeper.protocol` turn them into
requests, asks :mod:`gatekeeper.engine` for decisions, runs allowed commands through
:mod:`gatekeeper.executor`, and parks ``ask`` runs in :mod:`gatekeeper.approval` until a human
answers. A slow or dead client never blocks another: each connection has its own reader, each
run its own task, and writes wait only on their own connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import itertools
import json
import logging
import os
import select
import signal
import socket
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from gatekeeper import __version__
from gatekeeper.analysis_worker import AnalysisPool
from gatekeeper.approval import Approvals, HumanAnswer, approver_refusal
from gatekeeper.audit import AuditError, AuditLog, FsyncPolicy
from gatekeeper.engine import Decision, Session, decide_analysis, decide_path
from gatekeeper.errors import BadInput, GatekeeperError
from gatekeeper.executor import Execution, Guardian, pump, split_utf8
from gatekeeper.executor import start as start_process
from gatekeeper.policy import Policy, Rule, RuleSet, load_policy_dir
from gatekeeper.policy_edit import add_allow_rule
from gatekeeper.protocol import (
    VERSION,
    Answer,
    Cancel,
    Check,
    LineDecoder,
    ProtocolError,
    Request,
    Run,
    encode,
    encode_id,
    error_reply,
    parse_request,
)
from gatekeeper.systemd import Notifier, inherited_socket

log = logging.getLogger(__name__)

_REPLY_CACHE = 4096  # encoded check replies kept (cleared whole when full)
_HIGH_WATER = 256 * 1024  # bytes queued for a client before its writers wait for it


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


@dataclass(slots=True, eq=False)
class _RunState:
    request_id: Any
    pending_key: str | None = None
    execution: Execution | None = None
    ref: int | None = None  # seq of the run's decision record in the audit log
    cancelled: str | None = None


@dataclass(slots=True, eq=False)
class _CheckState:
    """One check request as far as it is decided."""

    policy: Policy
    session: Session | None
    cwd: str
    subject: str
    home: str | None
    key: tuple[str, str | None, str, str, str | None]
    decision: Decision | None = None
    body: bytes | None = None  # the decision's JSON
    members: bytes | None = None  # its audit record's fields, encoded (cached with the reply)


@dataclass(slots=True, eq=False)
class _Conn:
    transport: asyncio.Transport
    pid: int | None
    uid: int | None
    name: str | None
    runs: dict[Any, _RunState] = field(default_factory=dict)
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
        if self.closed or self.transport.is_closing():
            self.closed = True
            return
        self.transport.write(encode(message))

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


class _Connection(asyncio.Protocol):
    """One client connection. Quick requests are answered inside data_received, in the same
    turn of the event loop that read them; runs get tasks of their own."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.decoder = LineDecoder()
        self.conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # pragma: no cover - always a stream
            raise TypeError("gatekeeper serves stream sockets only")
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        pid, uid = peer_credentials(sock) if sock is not None else (None, None)
        name: str | None = None
        if pid:
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(pid).name()
        conn = _Conn(transport, pid, uid, name)
        self.conn = conn
        if uid != os.getuid() or self.daemon.stopping:
            why = "this daemon serves only its own user" if uid != os.getuid() else "stopping"
            conn.write(error_reply(None, "forbidden", why))
            conn.closed = True
            # Half-close: the client reads the error, then EOF; what it sends is discarded
            # (closing with its request unread would reset the connection instead).
            if transport.can_write_eof():
                transport.write_eof()
            asyncio.get_running_loop().call_later(5, transport.close)
            return
        self.daemon.connections.add(conn)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        try:
            for line in self.decoder.feed(data):
                if line.strip():
                    self.daemon.on_line(conn, line)
        except ProtocolError as exc:  # too_large: the stream cannot be resynchronised
            conn.write(exc.reply())
            conn.closed = True
            conn.transport.close()

    def eof_received(self) -> bool:
        conn = self.conn
        if conn is None or not conn.runs:
            return False  # nothing in flight: close
        # The peer either closed (its runs must die) or only shut down its sending side
        # (`socat`, `nc -N`) and still reads the events of its runs.
        task = asyncio.get_running_loop().create_task(self.daemon.linger(conn))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.daemon.forget(self.conn)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.writable.clear()
            self.conn.transport.pause_reading()  # and stop taking requests from it

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.writable.set()
            with contextlib.suppress(RuntimeError):
                self.conn.transport.resume_reading()


def peer_credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None, None
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


class Daemon:
    def __init__(self, config: ServeConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier("")
        # Commands are parsed (and allows confirmed) in worker processes: a parser crash
        # costs one "ask", not the daemon, and no parser ever runs on the event loop.
        self.analyser = AnalysisPool()
        self.policies: dict[str, Policy] = {}
        self.reload_error: str | None = None
        self.session: dict[str, dict[str, list[Rule]]] = {}
        self._session_sets: dict[str, Session] = {}
        # Encoded check replies by request (see _check); entries carry the objects they
        # were computed from and count only while those are still the live ones.
        self._replies: dict[
            tuple[str, str | None, str, str, str | None],
            tuple[Policy, Any, Decision, bytes, bytes | None],
        ] = {}
        self.approvals = Approvals()
        self.audit: AuditLog | None = None
        self.started = time.monotonic()
        self.guardian = Guardian()
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_Conn] = set()
        self._executions: dict[int, Execution] = {}
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._mtimes: dict[str, float] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._markers = itertools.count(1)
        self._owns_socket = config.listen_socket is None

    # -- policies -----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the policy directory; raises on error (used at start)."""
        self.policies = load_policy_dir(self.config.policy_dir)
        self._mtimes = self._scan_mtimes()
        if self.config.default_agent and self.config.default_agent not in self.policies:
            known = ", ".join(sorted(self.policies))
            raise GatekeeperError(
                f"default agent {self.config.default_agent!r} is not in "
                f"{self.config.policy_dir} (agents: {known}); pick one with --default-agent"
            )

    def reload(self) -> str | None:
        """Reload; on error keep the policies running and return why."""
        self.notifier.reloading()
        try:
            policies = load_policy_dir(self.config.policy_dir)
        except GatekeeperError as exc:
            self.reload_error = str(exc)
            self._mtimes = self._scan_mtimes()
            log.error("reload failed, keeping the previous policies: %s", exc)
            self.notifier.ready(f"reload FAILED, previous policies in use: {exc}")
            return self.reload_error
        self.policies = policies
        self._replies.clear()
        self.reload_error = None
        self._mtimes = self._scan_mtimes()
        log.info("policies reloaded: %s", ", ".join(sorted(policies)))
        self.notifier.ready(self.summary())
        return None

    def summary(self) -> str:
        """One line for systemctl status."""
        return (
            f"serving {len(self.policies)} agent(s) on {self.config.socket_path}; "
            f"{len(self.approvals.items)} pending, {len(self._executions)} running"
        )

    def _scan_mtimes(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.config.policy_dir):
                if entry.name.endswith(".md"):
                    with contextlib.suppress(OSError):
                        out[entry.name] = entry.stat().st_mtime
        return out

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch_interval)
            if self._scan_mtimes() != self._mtimes:
                self.reload()

    def policy_for(self, agent: str | None, rid: Any) -> Policy:
        name = agent or self.config.default_agent
        if not name:
            raise ProtocolError(
                "unknown_agent", "no agent given and the daemon has no default", rid
            )
        policy = self.policies.get(name)
        if policy is None:
            known = ", ".join(sorted(self.policies))
            raise ProtocolError("unknown_agent", f"no agent named {name!r} (agents: {known})", rid)
        return policy

    def add_session_rule(self, agent: str, permission: str, pattern: str, who: str) -> None:
        rules = self.session.setdefault(agent, {}).setdefault(permission, [])
        rules.append(Rule(pattern, "allow", f"session:{who}", f"always.{permission}"))
        self._replies.clear()
        self._session_sets[agent] = {
            perm: RuleSet.build(perm, tuple(rs)) for perm, rs in self.session[agent].items()
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.load()
        if self.config.audit_log is not None and self.audit is None:
            self.audit = AuditLog(
                self.config.audit_log,
                fsync=self.config.audit_fsync,
                max_bytes=self.config.audit_max_bytes,
                keep=self.config.audit_keep,
            )
        loop = asyncio.get_running_loop()
        sock = self.config.listen_socket or self._bind()
        self._server = await loop.create_unix_server(lambda: _Connection(self), sock=sock)
        self._watch_task = loop.create_task(self._watch())
        self.analyser.start()
        log.info("listening on %s", self.config.socket_path)
        self.notifier.ready(self.summary())

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
        sock.listen(128)
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
        if self._server is not None:
            self._server.close()
        if self._watch_task is not None:
            self._watch_task.cancel()
        for key in list(self.approvals.items):
            self.approvals.resolve(key, HumanAnswer("cancelled", message="the daemon stopped"))
        deadline = time.monotonic() + self.config.grace
        while self._executions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for execution in list(self._executions.values()):
            execution.kill("daemon shutdown")
        tasks = [t for c in self.connections for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        for conn in list(self.connections):
            conn.closed = True
            conn.transport.close()
        if self._owns_socket:
            with contextlib.suppress(OSError):
                self.config.socket_path.unlink()
        if self.audit is not None:
            self.audit.close()
        await self.analyser.close()

    # -- connections --------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def forget(self, conn: _Conn) -> None:
        """The connection is gone: its runs die, its subscription ends."""
        conn.closed = True
        self.connections.discard(conn)
        if conn.subscription is not None:
            self.approvals.unsubscribe(conn.subscription)
            conn.subscription = None
        for state in list(conn.runs.values()):
            self._cancel(state, "the client disconnected")
        conn.writable.set()

    async def linger(self, conn: _Conn) -> None:
        """After EOF, let runs finish while the peer still listens; stop when it hangs up."""
        sock = conn.transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        if fd >= 0:
            poller = select.poll()
            poller.register(fd, select.POLLHUP | select.POLLERR)
            while conn.runs and not conn.closed and not self._stopped.is_set():
                if poller.poll(0):
                    break  # both directions gone: a dead client
                await asyncio.sleep(0.05)
        self.forget(conn)
        conn.transport.close()

    def on_line(self, conn: _Conn, line: bytes) -> None:
        """Serve one request line: quick ops answer at once, runs start a task."""
        try:
            req = parse_request(line)
        except ProtocolError as exc:
            conn.write(exc.reply())
            return
        try:
            if isinstance(req, Check) and req.wait:
                if req.id in conn.runs:
                    raise ProtocolError(
                        "bad_request", f"a request with id {req.id!r} is waiting", req.id
                    )
                wait_state = _RunState(req.id)
                conn.runs[req.id] = wait_state
                waiter = asyncio.get_running_loop().create_task(
                    self._check_and_wait(conn, req, wait_state)
                )
                conn.tasks.add(waiter)
                waiter.add_done_callback(conn.tasks.discard)
                return
            if isinstance(req, Run):
                if req.id in conn.runs:
                    raise ProtocolError(
                        "bad_request", f"a run with id {req.id!r} is running", req.id
                    )
                state = _RunState(req.id)
                conn.runs[req.id] = state
                task = asyncio.get_running_loop().create_task(self._run_guarded(conn, req, state))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
                return
            if isinstance(req, Check):
                now = self._check_now(conn, req)
                if now is not None:
                    conn.write_raw(now)
                    return
                task = asyncio.get_running_loop().create_task(self._check_later(conn, req))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
                return
            reply = self._handle(conn, req)
            if isinstance(reply, bytes):
                conn.write_raw(reply)
            else:
                conn.write(reply)
        except ProtocolError as exc:
            conn.write(exc.reply())
        except Exception:  # the daemon must survive any one bad request
            log.exception("internal error on %r", line[:200])
            conn.write(error_reply(req.id, "internal", "internal error; see the daemon log"))

    def _handle(self, conn: _Conn, req: Request) -> dict[str, Any] | bytes:
        rid = req.id
        if isinstance(req, Cancel):
            state = conn.runs.get(req.target)
            if state is None:
                raise ProtocolError(
                    "not_found", f"no run with id {req.target!r} on this connection", rid
                )
            self._cancel(state, "cancelled by the client")
            return {"id": rid, "ok": True}
        if isinstance(req, Answer):
            return self._answer(conn, req)
        if req.op == "status":
            return {
                "id": rid,
                "version": __version__,
                "protocol": VERSION,
                "agents": sorted(self.policies),
                "default_agent": self.config.default_agent,
                "pending": len(self.approvals.items),
                "approvers": self.approvals.approvers,
                "runs": len(self._executions),
                "uptime_s": round(time.monotonic() - self.started, 3),
                "policy_dir": str(self.config.policy_dir),
                "reload_error": self.reload_error,
            }
        if req.op == "reload":
            error = self.reload()
            if error is not None:
                raise ProtocolError(
                    "policy_error", f"reload failed, the previous policies stay: {error}", rid
                )
            return {"id": rid, "ok": True, "agents": sorted(self.policies)}
        if req.op == "pending":
            return {"id": rid, "pending": [p.to_json() for p in self.approvals.items.values()]}
        if req.op == "subscribe":
            if conn.subscription is None:
                conn.subscription = self.approvals.subscribe(
                    lambda event, body: self._push(conn, rid, event, body)
                )
            return {"id": rid, "ok": True}
        raise ProtocolError("unknown_op", f"unknown op {req.op!r}", rid)

    def _push(self, conn: _Conn, rid: Any, event: str, body: dict[str, Any]) -> None:
        conn.write({"id": rid, "event": event, **body})

    def _home(self, env: dict[str, str] | None) -> str | None:
        if env is not None and env.get("HOME", "").startswith("/"):
            return env["HOME"]
        return os.environ.get("HOME")

    # -- decisions ----------------------------------------------------------------------------

    def _decide_now(
        self,
        policy: Policy,
        command: str,
        cwd: str,
        home: str | None,
        env: dict[str, str] | None = None,
    ) -> Decision | None:
        """The decision from what the analysis workers already said; None if they must be
        asked (off the event loop: see :meth:`_decide`)."""
        analysis = self.analyser.cached(command, cwd, home)
        if analysis is None:
            return None
        session = self._session_sets.get(policy.name)
        decision = decide_analysis(policy, analysis, session=session, env=env)
        if decision.decision != "allow":
            return decision
        extra = self.analyser.cached_confirmation(analysis.command)
        if extra is None:
            return None
        if extra:
            decision = decide_analysis(policy, analysis, session=session, env=env, extra=extra)
        return decision

    async def _decide(
        self,
        conn: _Conn,
        policy: Policy,
        command: str | bytes,
        cwd: str,
        home: str | None,
        env: dict[str, str] | None = None,
    ) -> Decision:
        """Decide a command line: analysed in a worker; a would-be allow is confirmed by the
        independent readers first (an ask or deny needs no confirmation: stricter is safe)."""
        analysis = await self.analyser.analyse(command, cwd, home, client=conn)
        session = self._session_sets.get(policy.name)
        decision = decide_analysis(policy, analysis, session=session, env=env)
        if decision.decision == "allow":
            extra = await self.analyser.confirm(analysis, client=conn)
            if extra:
                decision = decide_analysis(policy, analysis, session=session, env=env, extra=extra)
        return decision

    def _known(self, conn: _Conn, req: Check) -> _CheckState:
        """A check as far as it can be decided now: from a reply made before, for a path, or
        for a command the analysis workers have already read. ``decision`` is None when they
        must be asked first (off the event loop: :meth:`_decide_check`)."""
        policy = self.policy_for(req.agent, req.id)
        cwd = req.cwd or self._client_cwd(conn, req.id)
        if not cwd.startswith("/"):
            raise ProtocolError("bad_request", "field 'cwd' must be an absolute path", req.id)
        home = self._home(None)
        subject = req.path if req.path is not None else req.command or ""
        key = (policy.name, req.permission if req.path is not None else None, subject, cwd, home)
        state = _CheckState(policy, self._session_sets.get(policy.name), cwd, subject, home, key)
        hit = self._replies.get(key)
        if hit is not None and hit[0] is policy and hit[1] is state.session:
            state.decision, state.body, state.members = hit[2], hit[3], hit[4]
            return state
        try:
            if req.path is not None:
                found: Decision | None = decide_path(
                    policy, req.permission or "edit", req.path, cwd, home, session=state.session
                )
            else:
                found = self._decide_now(policy, subject, cwd, home)
        except BadInput as exc:
            raise ProtocolError("bad_request", str(exc), req.id) from None
        if found is not None:
            self._remember_reply(state, found)
        return state

    def _remember_reply(self, state: _CheckState, decision: Decision) -> None:
        # The decision is a pure function of these immutable values (a reload or an
        # "always" replaces the policy or session object), so its encoded form can be
        # reused for the same request: only the id differs. Keyed on the objects in force
        # when the request came: a reload meanwhile leaves an entry never used again.
        state.decision = decision
        state.body = encode(decision.to_json())[:-1]
        if len(self._replies) >= _REPLY_CACHE:
            self._replies.clear()
        self._replies[state.key] = (state.policy, state.session, decision, state.body, None)

    def _check_now(self, conn: _Conn, req: Check) -> bytes | None:
        """A check answered in the turn of the event loop that read it, or None if the
        analysis workers must be asked first (then :meth:`_check_later` answers)."""
        state = self._known(conn, req)
        if state.body is None:
            return None
        self._record_check(conn, req, state)
        return _decision_reply(req.id, state.policy.name, state.body)

    async def _check_later(self, conn: _Conn, req: Check) -> None:
        try:
            policy, _cwd, _subject, _decision, body, _ref = await self._decide_check(conn, req)
            conn.write_raw(_decision_reply(req.id, policy.name, body))
        except ProtocolError as exc:
            conn.write(exc.reply())
        except Exception:
            log.exception("internal error in check %r", req.id)
            conn.write(error_reply(req.id, "internal", "internal error; see the daemon log"))

    async def _decide_check(
        self, conn: _Conn, req: Check
    ) -> tuple[Policy, str, str, Decision, bytes, int | None]:
        """Decide and record a check: (policy, cwd, subject, decision, its JSON, audit seq)."""
        state = self._known(conn, req)
        if state.decision is None:
            try:
                decision = await self._decide(
                    conn, state.policy, state.subject, state.cwd, state.home
                )
            except BadInput as exc:
                raise ProtocolError("bad_request", str(exc), req.id) from None
            self._remember_reply(state, decision)
        assert state.decision is not None  # noqa: S101 - set just above
        assert state.body is not None  # noqa: S101
        ref = self._record_check(conn, req, state)
        return state.policy, state.cwd, state.subject, state.decision, state.body, ref

    def _record_check(self, conn: _Conn, req: Check, state: _CheckState) -> int | None:
        if self.audit is None:
            return None
        if state.members is None:
            record: dict[str, Any] = {
                "kind": "decision",
                "op": "check",
                "agent": state.policy.name,
                "cwd": state.cwd,
                "decided_by": "policy",
            }
            if req.path is not None:
                record.update(path=req.path, permission=req.permission)
            else:
                record["command"] = state.subject
            state.members = encode(record)[1:-2]  # the same for every such check: cached
            if state.key in self._replies:
                self._replies[state.key] = (*self._replies[state.key][:4], state.members)
        return self._record(conn, req.id, {}, state.body, state.members)

    async def _check_and_wait(self, conn: _Conn, req: Check, state: _RunState) -> None:
        """A check that, on ask, waits for a human like a run does (for plugins that can only
        allow or block, such as opencode's tool.execute.before)."""
        try:
            policy, cwd, subject, decision, body, ref = await self._decide_check(conn, req)
            state.ref = ref
            if decision.decision != "ask":
                conn.write_raw(_decision_reply(req.id, policy.name, body))
                return
            answer = await self._ask(conn, req, state, policy, decision, cwd, subject)
            approved = answer.approved
            reason = self._answer_reason(answer)
            self._record(conn, req.id, {
                "kind": "outcome", "op": "check", "ref": ref, "agent": policy.name,
                "cwd": cwd, "command" if req.path is None else "path": subject,
                "outcome": "approved" if approved else "blocked",
                "decided_by": answer.decided_by,
                "answer": answer.answer, "pattern": answer.pattern, "message": answer.message,
            })  # fmt: skip
            final: dict[str, Any] = {
                "id": req.id,
                "agent": policy.name,
                **decision.to_json(),
                "decision": "allow" if approved else "deny",
                "reason": reason,
                "by": answer.decided_by,
            }
            if answer.message and answer.answer == "reject":
                final["message"] = answer.message
            conn.write(final)
        except ProtocolError as exc:
            conn.write(exc.reply())
        except Exception:
            log.exception("internal error in a waiting check %r", req.id)
            conn.write(error_reply(req.id, "internal", "internal error; see the daemon log"))
        finally:
            conn.runs.pop(req.id, None)

    def _answer_reason(self, answer: HumanAnswer) -> str:
        if answer.answer == "once":
            return "approved once by a human"
        if answer.answer == "always":
            return f"approved always ({answer.pattern}) by a human"
        return {
            "reject": "rejected by a human",
            "timeout": f"nobody answered within {self.config.approval_timeout:g} s",
            "cancelled": answer.message or "cancelled",
        }.get(answer.answer, answer.answer)

    def _client_cwd(self, conn: _Conn, rid: Any) -> str:
        if conn.pid:
            with contextlib.suppress(psutil.Error):
                return str(psutil.Process(conn.pid).cwd())
        raise ProtocolError("bad_request", "missing field 'cwd'", rid)

    def _answer(self, conn: _Conn, req: Answer) -> dict[str, Any]:
        item = self.approvals.items.get(req.request)
        if item is None:
            raise ProtocolError("not_found", f"no pending request {req.request!r}", req.id)
        refusal = approver_refusal(
            conn.pid,
            item.client_pid,
            {e.pid for e in self._executions.values()},
            require_tty=self.config.approvers_need_tty,
        )
        if refusal is not None:
            raise ProtocolError("forbidden", refusal, req.id)
        pattern = req.pattern
        if req.answer == "always":
            pattern = pattern or item.suggestion
            if not pattern:
                raise ProtocolError("bad_request", "an 'always' answer needs a 'pattern'", req.id)
            self.add_session_rule(item.agent, item.permission, pattern, f"pid {conn.pid}")
        reply: dict[str, Any] = {
            "id": req.id,
            "ok": True,
            "request": req.request,
            "pattern": pattern,
        }
        if req.persist and req.answer == "always" and pattern:
            # The approval stands either way; whether the file could be edited is reported.
            try:
                reply["saved"] = self.persist_rule(item, pattern)
            except GatekeeperError as exc:
                reply["saved"] = None
                reply["save_error"] = str(exc)
        self.approvals.resolve(req.request, HumanAnswer(req.answer, pattern, req.message))
        return reply

    def persist_rule(self, item: Any, pattern: str) -> str:
        """Write an "always" rule into the agent's file (in place), then reload; "file:line"."""
        policy = self.policies.get(item.agent)
        if policy is None:
            raise GatekeeperError(f"agent {item.agent!r} is no longer loaded")
        path = Path(policy.path)
        subject = next(
            (
                p.subject
                for p in item.decision.parts
                if p.decision == "ask" and p.permission == item.permission
            ),
            None,
        )
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GatekeeperError(f"{path}: cannot read: {exc}") from None
        new_text, line = add_allow_rule(text, str(path), item.permission, pattern, subject)
        tmp = path.with_name(f".{path.name}.gatekeeper-tmp")
        try:
            tmp.write_bytes(new_text.encode("utf-8"))
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise GatekeeperError(f"{path}: cannot write: {exc}") from None
        error = self.reload()
        if error is not None:
            raise GatekeeperError(f"saved to {path}:{line}, but the reload failed: {error}")
        log.info("saved always rule %r for %s to %s:%d", pattern, item.agent, path, line)
        return f"{path}:{line}"

    def _cancel(self, state: _RunState, why: str) -> None:
        state.cancelled = why
        if state.pending_key is not None:
            self.approvals.resolve(state.pending_key, HumanAnswer("cancelled", message=why))
        if state.execution is not None:
            state.execution.kill(why)

    def _record(
        self,
        conn: _Conn,
        rid: Any,
        record: dict[str, Any],
        decision_json: bytes | None = None,
        members: bytes = b"",
    ) -> int | None:
        """Write one audit record before the reply goes out; its seq, or None without a log.

        ``members`` are fields already encoded (a warm check's, kept with its cached reply).
        If the record cannot be written, the request fails: nothing happens unrecorded.
        """
        if self.audit is None:
            return None
        head = b'"id":' + encode_id(rid) + b"," + conn.client_json
        try:
            return self.audit.write(
                record, decision_json, head + (b"," + members if members else b"")
            )
        except AuditError as exc:
            log.error("audit log: %s", exc)
            raise ProtocolError(
                "internal", f"the audit log cannot be written, so nothing was done: {exc}", rid
            ) from None

    def _outcome(
        self, conn: _Conn, rid: Any, req: Run, agent: str, ref: int | None, **fields: Any
    ) -> None:
        self._record(
            conn,
            rid,
            {
                "kind": "outcome",
                "op": "run",
                "ref": ref,
                "agent": agent,
                "cwd": req.cwd,
                "command": req.command,
                **fields,
            },
        )

    # -- runs ---------------------------------------------------------------------------------

    async def _run_guarded(self, conn: _Conn, req: Run, state: _RunState) -> None:
        try:
            await self._run(conn, req, state)
        except ProtocolError as exc:
            await conn.send(exc.reply())
        except Exception:
            log.exception("internal error in run %r", req.id)
            await conn.send(error_reply(req.id, "internal", "internal error; see the daemon log"))
        finally:
            conn.runs.pop(req.id, None)

    async def _run(self, conn: _Conn, req: Run, state: _RunState) -> None:
        rid = req.id
        policy = self.policy_for(req.agent, rid)
        if not os.path.isdir(req.cwd):
            raise ProtocolError("bad_request", f"cwd {req.cwd!r} is not a directory", rid)
        env = dict(req.env) if req.env is not None else _daemon_env()
        try:
            decision = await self._decide(conn, policy, req.command, req.cwd, self._home(env), env)
        except BadInput as exc:
            raise ProtocolError("bad_request", str(exc), rid) from None
        ref = self._record(
            conn, rid,
            {"kind": "decision", "op": "run", "agent": policy.name, "cwd": req.cwd,
             "command": req.command, "decided_by": "policy"},
            encode(decision.to_json())[:-1],
        )  # fmt: skip
        state.ref = ref
        await conn.send(
            {"id": rid, "event": "decision", "agent": policy.name, **decision.to_json()}
        )
        if decision.decision == "deny":
            self._outcome(conn, rid, req, policy.name, ref, outcome="blocked", decided_by="policy")
            await self._blocked(conn, rid, decision.reason, None, "policy")
            return
        if decision.decision == "ask":
            answer = await self._ask(conn, req, state, policy, decision, req.cwd, req.command)
            approved = answer.approved
            reason = self._answer_reason(answer)
            self._outcome(
                conn, rid, req, policy.name, ref,
                outcome="approved" if approved else "blocked", decided_by=answer.decided_by,
                answer=answer.answer, pattern=answer.pattern, message=answer.message,
            )  # fmt: skip
            await conn.send(
                {
                    "id": rid,
                    "event": "decision",
                    "agent": policy.name,
                    "decision": "allow" if approved else "deny",
                    "reason": reason,
                    "parts": decision.to_json()["parts"],
                    "by": answer.decided_by,
                }
            )
            if not approved:
                message = answer.message if answer.answer == "reject" else None
                await self._blocked(conn, rid, reason, message, answer.answer)
                return
        if state.cancelled:
            self._outcome(
                conn,
                rid,
                req,
                policy.name,
                ref,
                outcome="blocked",
                decided_by="cancelled",
                message=state.cancelled,
            )
            await self._blocked(conn, rid, state.cancelled, None, "cancelled")
            return
        await self._execute(conn, req, state, env, policy.name)

    async def _ask(
        self,
        conn: _Conn,
        req: Run | Check,
        state: _RunState,
        policy: Policy,
        decision: Decision,
        cwd: str,
        subject: str,
    ) -> HumanAnswer:
        first_ask = next((p for p in decision.parts if p.decision == "ask"), None)
        item = self.approvals.add(
            agent=policy.name,
            cwd=cwd,
            command=subject,
            decision=decision,
            client_pid=conn.pid,
            client_name=conn.name,
            timeout=self.config.approval_timeout,
            permission=first_ask.permission if first_ask is not None else "bash",
        )
        state.pending_key = item.key
        await conn.send(
            {
                "id": req.id,
                "event": "waiting",
                "request": item.key,
                "timeout_s": self.config.approval_timeout,
                "approvers": self.approvals.approvers,
            }
        )
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), self.config.approval_timeout)
        except TimeoutError:
            self.approvals.resolve(item.key, HumanAnswer("timeout"))
            return HumanAnswer("timeout")
        finally:
            state.pending_key = None

    async def _blocked(
        self, conn: _Conn, rid: Any, reason: str, message: str | None, by: str
    ) -> None:
        body: dict[str, Any] = {
            "id": rid,
            "event": "blocked",
            "decision": "deny",
            "reason": reason,
            "by": by,
        }
        if message:
            body["message"] = message
        await conn.send(body)

    async def _execute(
        self, conn: _Conn, req: Run, state: _RunState, env: dict[str, str], agent: str
    ) -> None:
        rid = req.id
        marker = f"{os.getpid()}-{next(self._markers)}"
        stdin = req.stdin
        began = time.monotonic()
        self.guardian.expect(marker)
        try:
            execution = await start_process(req.command, req.cwd, env, stdin, marker)
        except OSError as exc:
            self._outcome(
                conn,
                rid,
                req,
                agent,
                state.ref,
                outcome="error",
                message=f"cannot start the command: {exc}",
            )
            raise ProtocolError("bad_request", f"cannot start the command: {exc}", rid) from None
        state.execution = execution
        self._executions[execution.pid] = execution
        self.guardian.watch(execution.pid, marker)
        counts = {"stdout": 0, "stderr": 0}
        carry = {"stdout": b"", "stderr": b""}

        async def sink(stream: str, data: bytes) -> None:
            counts[stream] += len(data)
            data = carry[stream] + data
            text, rest = split_utf8(data)
            carry[stream] = rest
            if text is None:
                await conn.send(_binary_output(rid, stream, data))
            elif text:
                await conn.send({"id": rid, "event": "output", "stream": stream, "data": text})

        timed_out = False
        try:
            try:
                code = await asyncio.wait_for(pump(execution, stdin, sink), req.timeout)
            except TimeoutError:
                timed_out = True
                execution.kill("timeout")
                code = await execution.proc.wait()
        finally:
            self._executions.pop(execution.pid, None)
            self.guardian.forget(execution.pid)
        for stream, rest in carry.items():
            if rest:  # a multi-byte character cut off at the very end
                await conn.send(_binary_output(rid, stream, rest))
        duration_ms = round((time.monotonic() - began) * 1000, 3)
        body: dict[str, Any] = {
            "id": rid,
            "event": "exit",
            "code": code,
            "duration_ms": duration_ms,
        }
        if timed_out:
            body["timed_out"] = True
        if execution.killed_by and not timed_out:
            body["killed"] = execution.killed_by
        self._outcome(
            conn, rid, req, agent, state.ref, outcome="exit", exit=code,
            duration_ms=duration_ms, stdout_bytes=counts["stdout"],
            stderr_bytes=counts["stderr"], timed_out=timed_out,
            killed=execution.killed_by if not timed_out else None,
        )  # fmt: skip
        await conn.send(body)


def _binary_output(rid: Any, stream: str, data: bytes) -> dict[str, Any]:
    """An output event for bytes that are not UTF-8 text."""
    return {
        "id": rid,
        "event": "output",
        "stream": stream,
        "data": base64.b64encode(data).decode(),
        "encoding": "base64",
    }


def _decision_reply(rid: Any, agent: str, decision_json: bytes) -> bytes:
    """A check reply line from the encoded decision: only the id and agent are added."""
    return (
        b'{"id":'
        + encode_id(rid)
        + b',"agent":'
        + encode_id(agent)
        + b","
        + decision_json[1:]
        + b"\n"
    )


def _daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(key, None)
    return env


def serve(config: ServeConfig) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; exit status 0 on a clean stop.

    Under systemd it takes the socket of gatekeeper.socket (LISTEN_FDS) and reports its state
    (NOTIFY_SOCKET).
    """
    if config.listen_socket is None:
        config.listen_socket = inherited_socket()
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
