"""Audit records out to the log systems a team already runs: journald and syslog.

The hash-chained local log (:mod:`gatekeeper.audit`) stays the source of truth. A record
reaches a sink only after it is on the local log, and sending happens off the request path:
:meth:`Sinks.post` puts the written line on each sink's bounded queue and returns; one thread
per sink drains its queue. A sink that is down, slow or full never holds up a decision: its
queue fills, the oldest records are dropped (and counted), the problem is logged once, and the
thread reconnects with backoff. ``status`` reports each sink's counts (:meth:`Sinks.stats`).

Formatting is pure (a record in, bytes out): :func:`record_fields` is the one list of fields
both formats carry, :func:`journald_entry` the journal's native format, :func:`syslog_message`
an RFC 5424 message, :func:`octet_counted` RFC 6587 framing. Configuration is checked once, at
start, by :func:`parse_sinks`. Everything below the line "Sending" does I/O.
"""

from __future__ import annotations

import array
import collections
import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from gatekeeper.errors import GatekeeperError

log = logging.getLogger(__name__)

APP_NAME = "gatekeeper"
# RFC 5424 SD-IDs without an IANA name need "@" and a private enterprise number; 32473 is the
# one RFC 5612 reserves for documentation and examples (gatekeeper has none of its own).
SD_ID = "gatekeeper@32473"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
DEFAULT_QUEUE = 10_000
DEFAULT_MAX_MESSAGE = 65_000  # fits a UDP datagram; a receiver may cut sooner (rsyslog: 8 KiB)
MIN_MAX_MESSAGE = 480  # RFC 5424 §6.1: every receiver must take messages this long

FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
DEFAULT_FACILITY = "user"

# Severities (RFC 5424 §6.2.1; journald's PRIORITY uses the same numbers).
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6
_DECISION_SEVERITY = {"deny": WARNING, "ask": NOTICE, "allow": INFO}
_OUTCOME_SEVERITY = {"blocked": NOTICE, "approved": NOTICE, "exit": INFO, "error": ERR}


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """One configured sink, checked: where to send and how."""

    kind: Literal["syslog", "journald"]
    transport: Literal["unix", "udp", "tcp"]
    path: str = ""  # unix: the socket's path
    host: str = ""  # udp, tcp
    port: int = 0
    facility: int = FACILITIES[DEFAULT_FACILITY]
    hostname: str | None = None  # syslog HOSTNAME; None: this machine's name
    queue: int = DEFAULT_QUEUE
    max_message_bytes: int = DEFAULT_MAX_MESSAGE

    @property
    def name(self) -> str:
        """How status and the daemon's log name this sink: ``syslog tcp://host:514``."""
        if self.transport == "unix":
            return f"{self.kind} {self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind} {self.transport}://{host}:{self.port}"


_COMMON_KEYS = {"kind", "queue"}
_KEYS = {
    "syslog": _COMMON_KEYS | {"address", "facility", "hostname", "max_message_bytes"},
    "journald": _COMMON_KEYS | {"socket"},
}


def parse_sinks(value: object, where: str = "audit_sinks") -> tuple[SinkConfig, ...]:
    """The ``audit_sinks`` config value (a list of tables) as checked sinks; a
    :class:`GatekeeperError` naming the entry, the key and the fix otherwise."""
    if not isinstance(value, list):
        raise GatekeeperError(
            f"{where}: must be a list of tables, e.g. "
            '[[serve.audit_sinks]] kind = "syslog" address = "udp://127.0.0.1:514"'
        )
    return tuple(_parse_sink(entry, f"{where}[{i}]") for i, entry in enumerate(value))


def _parse_sink(entry: object, where: str) -> SinkConfig:
    if not isinstance(entry, dict):
        raise GatekeeperError(f"{where}: must be a table with a kind (syslog or journald)")
    kind = entry.get("kind")
    if kind not in _KEYS:
        raise GatekeeperError(f"{where}.kind: {kind!r} is not one of syslog, journald")
    unknown = set(entry) - _KEYS[kind]
    if unknown:
        raise GatekeeperError(
            f"{where}: unknown key(s) for a {kind} sink: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS[kind]))}"
        )
    queue = _int(entry, "queue", DEFAULT_QUEUE, 1, where)
    if kind == "journald":
        path = entry.get("socket", JOURNAL_SOCKET)
        if not isinstance(path, str) or not path.startswith("/"):
            raise GatekeeperError(f"{where}.socket: must be an absolute path, not {path!r}")
        return SinkConfig("journald", "unix", path=path, queue=queue)
    address = entry.get("address")
    if not isinstance(address, str) or not address:
        raise GatekeeperError(
            f"{where}.address: required: udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log"
        )
    transport, path, host, port = _address(address, f"{where}.address")
    facility_name = entry.get("facility", DEFAULT_FACILITY)
    if facility_name not in FACILITIES:
        raise GatekeeperError(
            f"{where}.facility: {facility_name!r} is not a syslog facility; one of "
            f"{', '.join(FACILITIES)}"
        )
    hostname = entry.get("hostname")
    if hostname is not None and (
        not isinstance(hostname, str)
        or not 0 < len(hostname) <= 255
        or not all(33 <= ord(c) <= 126 for c in hostname)
    ):
        raise GatekeeperError(
            f"{where}.hostname: 1 to 255 printable ASCII characters without spaces, "
            f"not {hostname!r}"
        )
    return SinkConfig(
        "syslog",
        transport,
        path=path,
        host=host,
        port=port,
        facility=FACILITIES[facility_name],
        hostname=hostname,
        queue=queue,
        max_message_bytes=_int(
            entry, "max_message_bytes", DEFAULT_MAX_MESSAGE, MIN_MAX_MESSAGE, where
        ),
    )


def _int(entry: Mapping[str, object], key: str, default: int, least: int, where: str) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise GatekeeperError(f"{where}.{key}: must be a whole number ≥ {least}, not {value!r}")
    return value


def _address(text: str, where: str) -> tuple[Literal["unix", "udp", "tcp"], str, str, int]:
    """(transport, path, host, port) of ``udp://h:p``, ``tcp://h:p``, ``unix:///path``."""
    fix = "use udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH (e.g. unix:///dev/log)"
    if text.startswith("/"):
        return "unix", text, "", 0
    parts = urlsplit(text)
    if parts.scheme == "unix":
        path = parts.path
        if not path.startswith("/") or parts.netloc:
            raise GatekeeperError(f"{where}: {text!r}: the socket path must be absolute; {fix}")
        return "unix", path, "", 0
    if parts.scheme not in ("udp", "tcp"):
        raise GatekeeperError(f"{where}: {text!r}: unknown scheme; {fix}")
    try:
        port = parts.port or 514
    except ValueError:
        raise GatekeeperError(f"{where}: {text!r}: the port must be 1 to 65535; {fix}") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise GatekeeperError(f"{where}: {text!r}: expected only a host and a port; {fix}")
    transport: Literal["udp", "tcp"] = "udp" if parts.scheme == "udp" else "tcp"
    return transport, "", parts.hostname, port


# --------------------------------------------------------------------------------------------
# Formatting: pure


def record_fields(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The fields a sink carries for one audit record, in order, as (lower-case name, text).

    journald prefixes them ``GATEKEEPER_`` (upper case); syslog puts them in its structured
    data. ``rule`` is the pattern of the part that decided (the first part whose decision is
    the request's), ``rule_source`` its ``file:line``; ``session`` and ``harness`` come from
    the request's ``context``.
    """
    out: list[tuple[str, str]] = []

    def add(name: str, value: object) -> None:
        if value is None or isinstance(value, (dict, list)):
            return
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append((name, str(value)))

    add("kind", record.get("kind"))
    add("op", record.get("op"))
    add("agent", record.get("agent"))
    decision = record.get("decision")
    if isinstance(decision, Mapping):
        verdict = decision.get("decision")
        add("decision", verdict)
        rule = _deciding_rule(decision, verdict)
        if rule is not None:
            add("rule", rule.get("pattern"))
            add("rule_source", rule.get("source"))
    add("decided_by", record.get("decided_by"))
    add("outcome", record.get("outcome"))
    add("answer", record.get("answer"))
    add("exit", record.get("exit"))
    add("ref", record.get("ref"))
    if "path" in record:
        add("path", record.get("path"))
        add("permission", record.get("permission"))
    else:
        add("command", record.get("command"))
    add("cwd", record.get("cwd"))
    context = record.get("context")
    if isinstance(context, Mapping):
        add("session", context.get("session"))
        add("harness", context.get("harness"))
    client = record.get("client")
    if isinstance(client, Mapping):
        add("client_pid", client.get("pid"))
    add("time", record.get("time"))
    add("seq", record.get("seq"))
    add("hash", record.get("hash"))
    return out


def _deciding_rule(decision: Mapping[str, Any], verdict: object) -> Mapping[str, Any] | None:
    for part in decision.get("parts") or ():
        if isinstance(part, Mapping) and part.get("decision") == verdict:
            rule = part.get("rule")
            return rule if isinstance(rule, Mapping) else None
    return None


def severity(record: Mapping[str, Any]) -> int:
    """The syslog severity (journald PRIORITY) of a record: deny → warning, ask → notice,
    allow → info; a run that could not start → err; a daemon that crashed before → warning."""
    kind = record.get("kind")
    if kind == "decision":
        decision = record.get("decision")
        verdict = decision.get("decision") if isinstance(decision, Mapping) else None
        return _DECISION_SEVERITY.get(str(verdict), NOTICE)
    if kind == "outcome":
        return _OUTCOME_SEVERITY.get(str(record.get("outcome")), INFO)
    if kind == "recovery" or (kind == "start" and record.get("previous") == "crashed"):
        return WARNING
    return INFO


_SHORT = 300  # characters of a command kept in the one-line message (the field has it all)


def summary(record: Mapping[str, Any]) -> str:
    """One line for people: ``tester: deny rm -rf / (rule "rm *", tester.md:18)``."""
    kind = record.get("kind")
    agent = record.get("agent", "?")
    subject = str(record.get("command", record.get("path", "")))
    if len(subject) > _SHORT:
        subject = subject[:_SHORT] + "…"
    subject = subject.replace("\n", "⏎")
    if kind == "decision":
        decision = record.get("decision")
        verdict = decision.get("decision") if isinstance(decision, Mapping) else "?"
        text = f"{agent}: {verdict} {subject}"
        rule = _deciding_rule(decision, verdict) if isinstance(decision, Mapping) else None
        if rule is not None:
            text += f' (rule "{rule.get("pattern")}", {rule.get("source")})'
        return text
    if kind == "outcome":
        outcome = record.get("outcome")
        if outcome == "exit":
            outcome = f"exit {record.get('exit')}"
        elif record.get("decided_by"):
            outcome = f"{outcome} by {record.get('decided_by')}"
        return f"{agent}: {outcome} {subject}"
    if kind == "start":
        previous = record.get("previous")
        return f"daemon started (pid {record.get('pid')}; the previous one: {previous})"
    if kind == "stop":
        return "daemon stopped"
    if kind == "recovery":
        return f"audit log recovered: {record.get('removed_bytes')} bytes of a torn tail removed"
    return f"audit record: {kind}"


def journald_entry(record: Mapping[str, Any]) -> bytes:
    """One journal entry in the native protocol (systemd's "Native Journal Protocol"):
    ``KEY=value\\n`` per field, or for a value with a newline ``KEY\\n``, its length as a
    little-endian 64-bit number, the value, ``\\n``."""
    fields: list[tuple[str, str]] = [
        ("MESSAGE", summary(record)),
        ("PRIORITY", str(severity(record))),
        ("SYSLOG_IDENTIFIER", APP_NAME),
    ]
    fields += [("GATEKEEPER_" + name.upper(), value) for name, value in record_fields(record)]
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def sd_escape(value: str) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 §6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _clip_escaped(value: str, limit: int) -> str:
    """``value`` escaped, cut to at most ``limit`` UTF-8 bytes (never inside an escape)."""
    out: list[str] = []
    size = 0
    for char in value:
        piece = sd_escape(char)
        size += len(piece.encode("utf-8", "replace"))
        if size > limit:
            out.append("…")
            break
        out.append(piece)
    return "".join(out)


def syslog_message(
    record: Mapping[str, Any],
    line: bytes,
    *,
    facility: int,
    hostname: str,
    procid: int,
    max_bytes: int = DEFAULT_MAX_MESSAGE,
) -> bytes:
    """An RFC 5424 message: ``<PRI>1 TIME HOST gatekeeper PID KIND [gatekeeper@32473 …] MSG``.

    The structured data holds :func:`record_fields`; MSG is the record's line exactly as in
    the local log (JSON, with its ``hash``), without a BOM so that receivers can parse it as
    JSON. When the message would pass ``max_bytes``, each value is cut, MSG is cut to what is
    left, and ``truncated="true"`` says so (the local log has it whole).
    """
    pri = facility * 8 + severity(record)
    timestamp = record.get("time") or "-"
    msgid = str(record.get("kind") or "-")[:32]
    header = f"<{pri}>1 {timestamp} {hostname or '-'} {APP_NAME} {procid} {msgid} ".encode()
    fields = record_fields(record)
    sd = _structured_data(fields, None)
    if len(header) + len(sd) + 1 + len(line) <= max_bytes:
        return header + sd + b" " + line
    sd = _structured_data(fields, max(32, max_bytes // 40))
    room = max_bytes - len(header) - len(sd) - 1
    msg = line[: max(0, room)].decode("utf-8", "ignore").encode("utf-8")
    return header + sd + b" " + msg


def _structured_data(fields: Sequence[tuple[str, str]], clip: int | None) -> bytes:
    params = [
        f'{name}="{sd_escape(value) if clip is None else _clip_escaped(value, clip)}"'
        for name, value in fields
    ]
    if clip is not None:
        params.append('truncated="true"')
    return f"[{SD_ID} {' '.join(params)}]".encode("utf-8", "replace")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 framing for a stream: ``LENGTH SP MESSAGE``."""
    return b"%d %s" % (len(message), message)


# --------------------------------------------------------------------------------------------
# Sending


class Transport:
    """One connection to a receiver: ``open``, ``send`` one message, ``close``."""

    timeout = 5.0

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.sock: socket.socket | None = None

    def open(self) -> None:
        raise NotImplementedError

    def send(self, payload: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


class Datagrams(Transport):
    """Unix or UDP datagrams, one message each (syslog on /dev/log or UDP; journald)."""

    def open(self) -> None:
        c = self.config
        if c.transport == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            target: Any = c.path
        else:
            family, kind, proto, _, target = socket.getaddrinfo(
                c.host, c.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
        sock.settimeout(self.timeout)  # a receiver whose queue is full blocks the sender
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def send(self, payload: bytes) -> None:
        assert self.sock is not None  # noqa: S101 - opened first
        self.sock.send(payload)


class Journal(Datagrams):
    """journald's native socket; an entry too large for a datagram goes in a sealed memfd
    whose descriptor is sent instead, as systemd's own sd_journal_sendv() does."""

    def send(self, payload: bytes) -> None:
        assert self.sock is not None  # noqa: S101 - opened first
        try:
            self.sock.send(payload)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(payload)

    def _send_memfd(self, payload: bytes) -> None:
        assert self.sock is not None  # noqa: S101 - opened first
        fd = os.memfd_create("gatekeeper-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(
                fd,
                fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
            )
            rights = array.array("i", [fd])
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        finally:
            os.close(fd)


class Stream(Transport):
    """TCP with RFC 6587 octet-counting framing."""

    def open(self) -> None:
        sock = socket.create_connection((self.config.host, self.config.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    def send(self, payload: bytes) -> None:
        sock = self.sock
        assert sock is not None  # noqa: S101 - opened first
        # A receiver that went away has sent its FIN: reconnect before sending into the void.
        readable, _, _ = select.select([sock], [], [], 0)
        if readable and sock.recv(1, socket.MSG_PEEK) == b"":
            raise ConnectionResetError(errno.ECONNRESET, "the receiver closed the connection")
        sock.sendall(octet_counted(payload))  # cut short by a timeout: the caller reconnects


def formatter(config: SinkConfig) -> Callable[[bytes], bytes]:
    """The pure formatting of one sink, bound to its settings: a log line in, a message out."""
    if config.kind == "journald":
        return lambda line: journald_entry(json.loads(line))
    hostname = config.hostname or _hostname()
    pid = os.getpid()

    def syslog(line: bytes) -> bytes:
        return syslog_message(
            json.loads(line),
            line,
            facility=config.facility,
            hostname=hostname,
            procid=pid,
            max_bytes=config.max_message_bytes,
        )

    return syslog


def _hostname() -> str:
    name = socket.gethostname()
    return "".join(c for c in name if 33 <= ord(c) <= 126)[:255] or "-"


def transport(config: SinkConfig) -> Transport:
    if config.kind == "journald":
        return Journal(config)
    if config.transport == "tcp":
        return Stream(config)
    return Datagrams(config)


class Sender:
    """One sink: a bounded queue filled by :meth:`post`, drained by its own thread."""

    BACKOFF_FIRST = 0.2
    BACKOFF_MAX = 5.0

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.format = formatter(config)
        self.transport = transport(config)
        self.queue: collections.deque[bytes] = collections.deque()
        self.cond = threading.Condition(threading.Lock())
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self.failing = False
        self._dropped_logged = 0  # drops already reported in the daemon's log
        self._closing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"gatekeeper-sink {config.name}"
        )

    def start(self) -> None:
        self._thread.start()

    def post(self, line: bytes) -> None:
        """Queue one written record; never blocks. A full queue loses its oldest record."""
        with self.cond:
            if len(self.queue) >= self.config.queue:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(line)
            self.cond.notify()

    def stats(self) -> dict[str, Any]:
        with self.cond:
            return {
                "sink": self.config.name,
                "ok": not self.failing,
                "sent": self.sent,
                "dropped": self.dropped,
                "errors": self.errors,
                "queued": len(self.queue),
                "last_error": self.last_error,
            }

    def close(self, timeout: float) -> None:
        """Send what is queued for up to ``timeout`` seconds (not while failing), then stop."""
        with self.cond:
            self._closing = True
            self.cond.notify()
        if self._thread.ident is not None:  # started (not when the audit log is off)
            self._thread.join(timeout)
            self._stop.set()
            with self.cond:
                self.cond.notify()
            self._thread.join(0.5)
        self.transport.close()

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.BACKOFF_FIRST
        connected = False
        while (line := self._next()) is not None:
            try:
                payload = self.format(line)
            except (ValueError, TypeError) as exc:  # not a record: nothing to retry
                self._fail(f"cannot format a record: {exc}", retry=None)
                continue
            try:
                if not connected:
                    self.transport.open()
                    connected = True
                self.transport.send(payload)
            except OSError as exc:
                self.transport.close()
                connected = False
                self._fail(_describe(exc), retry=line)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.BACKOFF_MAX)
                continue
            backoff = self.BACKOFF_FIRST
            self._succeeded()

    def _next(self) -> bytes | None:
        """The next record to send, waiting for one; None when the thread is to end. Drops
        of a sink that was slow rather than down are reported when its queue runs empty."""
        while True:
            unreported = 0
            with self.cond:
                if self._stop.is_set() or (self._closing and (self.failing or not self.queue)):
                    return None
                if self.queue:
                    return self.queue.popleft()
                if self.dropped > self._dropped_logged and not self.failing:
                    unreported = self.dropped - self._dropped_logged
                    self._dropped_logged = self.dropped
                else:
                    self.cond.wait()
            if unreported:  # logged outside the lock: post() must never wait on a log handler
                log.warning(
                    "audit sink %s could not keep up: %d record(s) dropped from its full queue "
                    "(they are in the local audit log)",
                    self.config.name, unreported,
                )  # fmt: skip

    def _fail(self, why: str, retry: bytes | None) -> None:
        with self.cond:
            self.errors += 1
            self.last_error = why
            if retry is not None:
                if len(self.queue) < self.config.queue:
                    self.queue.appendleft(retry)
                else:
                    self.dropped += 1
            first = retry is not None and not self.failing
            if retry is not None:
                self.failing = True
            queue = self.config.queue
        if retry is None:
            log.error("audit sink %s: %s (record skipped)", self.config.name, why)
        elif first:
            log.warning(
                "audit sink %s: %s; records wait in its queue (at most %d, then the oldest are "
                "dropped) and sending is retried; the local audit log has every record",
                self.config.name, why, queue,
            )  # fmt: skip

    def _succeeded(self) -> None:
        with self.cond:
            self.sent += 1
            recovered = self.failing
            self.failing = False
            dropped = self.dropped - self._dropped_logged
            self._dropped_logged = self.dropped
        if recovered:
            log.warning(
                "audit sink %s: sending again; %d record(s) dropped meanwhile (they are in the "
                "local audit log)",
                self.config.name, dropped,
            )  # fmt: skip


def _describe(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "the receiver did not take the record in time"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror}"
    return exc.strerror or str(exc)


class Sinks:
    """All configured sinks; :meth:`post` is what the audit log calls after each write."""

    def __init__(self, configs: Sequence[SinkConfig]) -> None:
        self.senders = [Sender(c) for c in configs]

    def start(self) -> None:
        for sender in self.senders:
            sender.start()

    def post(self, line: bytes) -> None:
        for sender in self.senders:
            sender.post(line)

    def stats(self) -> list[dict[str, Any]]:
        return [s.stats() for s in self.senders]

    def close(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        for sender in self.senders:
            sender.close(max(0.0, deadline - time.monotonic()))
