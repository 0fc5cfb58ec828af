"""Audit records out to journald and syslog (gatekeeper.sinks).

The formatting is tested with plain values. The sending is tested for real: a real rsyslogd,
started by the test with its own config (UDP, TCP and a Unix socket on test-chosen ports and
paths, each writing what it receives to a file with the structured data kept), a real daemon
with a real config file, the receiver stopped and killed mid-run; journald's wire format on a
Unix datagram socket the test binds itself (large entries arrive as a sealed memfd), and the
real journald where the machine has one.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit import read_records
from gatekeeper.errors import GatekeeperError
from gatekeeper.sinks import (
    SD_ID,
    journald_entry,
    octet_counted,
    parse_sinks,
    record_fields,
    sd_escape,
    severity,
    syslog_message,
)
from tests.daemon_util import Raw, make_policy_dir, short_dir, wait_for_socket

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None
)
needs_rsyslog = pytest.mark.skipif(
    RSYSLOGD is None, reason="rsyslogd is not installed (Debian package rsyslog; .ci/run adds it)"
)
JOURNAL = Path("/run/systemd/journal/socket")

DENY_RECORD: dict[str, Any] = {
    "seq": 7,
    "time": "2026-11-27T01:12:38.113170Z",
    "prev": "1" * 64,
    "kind": "decision",
    "op": "check",
    "id": 3,
    "client": {"pid": 4242, "uid": 1000, "name": "claude"},
    "agent": "tester",
    "cwd": "/work/p",
    "decided_by": "policy",
    "command": 'rm -rf "]x\\y"\necho done',
    "context": {"harness": "claude-code", "session": "s-1"},
    "decision": {
        "decision": "deny",
        "reason": "…",
        "parts": [
            {"subject": "echo done", "permission": "bash", "decision": "allow",
             "rule": {"pattern": "echo *", "action": "allow", "source": "tester.md:6"}},
            {"subject": "rm -rf ]x\\y", "permission": "bash", "decision": "deny",
             "rule": {"pattern": "rm *", "action": "deny", "source": "tester.md:18"}},
        ],
    },
    "hash": "a" * 64,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Parsers of what receivers get (independent of gatekeeper.sinks)


def parse_journal(data: bytes) -> dict[str, str]:
    """The journal's native format: KEY=value lines, or KEY\\n + u64 LE length + bytes + \\n."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        eq = data.find(b"=", i, nl)
        if eq >= 0:
            fields[data[i:eq].decode()] = data[eq + 1 : nl].decode()
            i = nl + 1
        else:
            key = data[i:nl].decode()
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            fields[key] = data[nl + 9 : nl + 9 + size].decode()
            assert data[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
    return fields


def parse_sd(text: str) -> tuple[str, dict[str, str], str]:
    """``[id k="v" …]`` at the start of ``text``: (id, params, the rest after it)."""
    assert text.startswith("["), text[:80]
    i = text.index(" ")
    sd_id = text[1:i]
    params: dict[str, str] = {}
    while text[i] == " ":
        eq = text.index("=", i)
        name = text[i + 1 : eq]
        assert text[eq + 1] == '"'
        j, value = eq + 2, []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
            value.append(text[j])
            j += 1
        params[name] = "".join(value)
        i = j + 1
    assert text[i] == "]"
    return sd_id, params, text[i + 1 :]


def parse_5424(message: bytes) -> dict[str, Any]:
    head, rest = message.decode().split("[", 1)
    pri_version, timestamp, host, app, procid, msgid, _ = head.split(" ")
    sd_id, params, msg = parse_sd("[" + rest)
    assert msg.startswith(" ")
    return {
        "pri": int(pri_version[1 : pri_version.index(">")]),
        "version": pri_version[pri_version.index(">") + 1 :],
        "time": timestamp, "host": host, "app": app, "procid": procid, "msgid": msgid,
        "sd_id": sd_id, "sd": params, "msg": msg[1:],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Formatting: pure


def test_the_fields_name_who_what_which_rule_where_and_the_chain() -> None:
    fields = dict(record_fields(DENY_RECORD))
    assert fields == {
        "kind": "decision",
        "op": "check",
        "agent": "tester",
        "decision": "deny",
        "rule": "rm *",  # the part that decided, not the first part
        "rule_source": "tester.md:18",
        "decided_by": "policy",
        "command": DENY_RECORD["command"],
        "cwd": "/work/p",
        "session": "s-1",
        "harness": "claude-code",
        "client_pid": "4242",
        "time": DENY_RECORD["time"],
        "seq": "7",
        "hash": "a" * 64,
    }
    path_check = {"kind": "decision", "path": "/etc/x", "permission": "edit", "seq": 1}
    assert dict(record_fields(path_check)) == {
        "kind": "decision", "path": "/etc/x", "permission": "edit", "seq": "1",
    }  # fmt: skip
    outcome = {"kind": "outcome", "outcome": "exit", "exit": 0, "ref": 7, "command": "true"}
    assert dict(record_fields(outcome))["outcome"] == "exit"
    assert dict(record_fields(outcome))["ref"] == "7"


def test_severity_follows_the_decision() -> None:
    def decided(verdict: str) -> dict[str, Any]:
        return {"kind": "decision", "decision": {"decision": verdict, "parts": []}}

    assert [severity(decided(v)) for v in ("deny", "ask", "allow")] == [4, 5, 6]
    assert severity({"kind": "outcome", "outcome": "error"}) == 3
    assert severity({"kind": "outcome", "outcome": "blocked"}) == 5
    assert severity({"kind": "outcome", "outcome": "exit"}) == 6
    assert severity({"kind": "start", "previous": "crashed"}) == 4
    assert severity({"kind": "start", "previous": "stopped"}) == 6


def test_journald_entry_is_the_native_format() -> None:
    entry = journald_entry(DENY_RECORD)
    # a value with a newline is length-prefixed, the others are KEY=value lines
    assert b"\nGATEKEEPER_COMMAND\n" + struct.pack("<Q", len(DENY_RECORD["command"])) in entry
    assert b"\nGATEKEEPER_AGENT=tester\n" in entry
    fields = parse_journal(entry)
    assert fields["SYSLOG_IDENTIFIER"] == "gatekeeper"
    assert fields["PRIORITY"] == "4"
    assert fields["MESSAGE"] == 'tester: deny rm -rf "]x\\y"⏎echo done (rule "rm *", tester.md:18)'
    assert fields["GATEKEEPER_COMMAND"] == DENY_RECORD["command"]
    assert fields["GATEKEEPER_SESSION"] == "s-1"
    assert fields["GATEKEEPER_HASH"] == "a" * 64
    for key in fields:  # journald's rule for field names
        assert key.replace("_", "").isalnum(), key
        assert key.isupper() and not key[0].isdigit() and not key.startswith("_")
        assert len(key) <= 64


def test_syslog_message_is_rfc5424_with_escaped_structured_data() -> None:
    line = json.dumps(DENY_RECORD, ensure_ascii=False, separators=(",", ":")).encode()
    message = syslog_message(DENY_RECORD, line, facility=16, hostname="box", procid=99)
    assert message.startswith(b"<132>1 2026-11-27T01:12:38.113170Z box gatekeeper 99 decision [")
    assert b'command="rm -rf \\"\\]x\\\\y\\"\necho done"' in message
    parsed = parse_5424(message)
    assert parsed["sd_id"] == SD_ID
    assert parsed["sd"] == dict(record_fields(DENY_RECORD))
    assert parsed["msg"].encode() == line  # MSG is the record exactly as in the local log
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'


def test_a_message_too_long_is_cut_and_says_so() -> None:
    record = {**DENY_RECORD, "command": "echo " + "é]" * 50_000}
    line = json.dumps(record, ensure_ascii=False).encode()
    message = syslog_message(record, line, facility=1, hostname="h", procid=1, max_bytes=4000)
    assert len(message) <= 4000
    message.decode("utf-8")  # still valid UTF-8: never cut inside a character
    parsed = parse_5424(message)
    assert parsed["sd"]["truncated"] == "true"
    assert parsed["sd"]["hash"] == "a" * 64  # what identifies the record survives
    assert parsed["sd"]["command"].endswith("…")
    assert line.startswith(parsed["msg"].encode())


def test_octet_counting_frames_by_byte_length() -> None:
    assert octet_counted("<14>1 é".encode()) == b"8 <14>1 \xc3\xa9"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"kind": "syslog"}, "audit_sinks: must be a list of tables"),
        ([{"kind": "splunk"}], "audit_sinks[0].kind: 'splunk' is not one of syslog, journald"),
        ([{"kind": "syslog"}], "audit_sinks[0].address: required: udp://HOST:PORT"),
        ([{"kind": "syslog", "address": "http://x:1"}], "unknown scheme"),
        ([{"kind": "syslog", "address": "udp://x:99999"}], "the port must be 1 to 65535"),
        ([{"kind": "syslog", "address": "unix://dev/log"}], "must be absolute"),
        (
            [{"kind": "journald"}, {"kind": "syslog", "address": "udp://h", "facility": "locl0"}],
            "audit_sinks[1].facility: 'locl0' is not a syslog facility; one of kern, user",
        ),
        ([{"kind": "syslog", "address": "/dev/log", "queue": 0}], "queue: must be a whole number"),
        ([{"kind": "journald", "address": "/x"}], "unknown key(s) for a journald sink: address"),
        ([{"kind": "journald", "socket": "rel"}], "socket: must be an absolute path"),
        ([{"kind": "syslog", "address": "/dev/log", "hostname": "a b"}], "hostname: 1 to 255"),
    ],
)
def test_bad_sink_configs_name_the_entry_and_the_fix(value: object, fragment: str) -> None:
    with pytest.raises(GatekeeperError) as err:
        parse_sinks(value)
    assert fragment in str(err.value)


def test_good_sink_configs() -> None:
    udp, tcp, unix, journal = parse_sinks(
        [
            {"kind": "syslog", "address": "udp://[::1]:5514", "facility": "local0"},
            {"kind": "syslog", "address": "tcp://logs.example.com"},
            {"kind": "syslog", "address": "unix:///dev/log", "queue": 5},
            {"kind": "journald"},
        ]
    )
    assert (udp.transport, udp.host, udp.port, udp.facility) == ("udp", "::1", 5514, 16)
    assert udp.name == "syslog udp://[::1]:5514"
    assert (tcp.transport, tcp.port, tcp.facility) == ("tcp", 514, 1)
    assert (unix.transport, unix.path, unix.queue) == ("unix", "/dev/log", 5)
    assert journal.name == "journald /run/systemd/journal/socket"


def test_serve_refuses_a_bad_sink_config_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[serve]\naudit_sinks = [{kind = "syslog", address = "udp://h", facility = 9}]')
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "serve", "--config", str(cfg),
         "--socket", str(tmp_path / "s.sock"), "--policy-dir", str(make_policy_dir(tmp_path))],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"{cfg}: [serve] audit_sinks[0].facility: 9 is not a syslog facility" in proc.stderr


# --------------------------------------------------------------------------------------------
# A real rsyslogd


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Rsyslog:
    """rsyslogd in the foreground with a config of ours: UDP, TCP and a Unix socket, each
    into its own file, one line per message: PRI|HOST|APP|PROCID|MSGID|TIME|SD|MSG."""

    TEMPLATE = (
        "%pri%|%hostname%|%app-name%|%procid%|%msgid%|%timereported:::date-rfc3339%|"
        "%structured-data%|%msg%\\n"
    )

    def __init__(self, where: Path) -> None:
        self.where = where
        self.udp = free_port(socket.SOCK_DGRAM)
        self.tcp = free_port(socket.SOCK_STREAM)
        self.unix = where / "log.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        conf = where / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{where}" maxMessageSize="256k")\n'
            'module(load="imudp")\nmodule(load="imtcp")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'template(name="gk" type="string" string="{self.TEMPLATE}")\n'
            + "".join(
                f'ruleset(name="{n}") {{ action(type="omfile" file="{where}/{n}.log" '
                'template="gk") }\n'
                for n in ("udp", "tcp", "unix")
            )
            + f'input(type="imudp" address="127.0.0.1" port="{self.udp}" ruleset="udp")\n'
            f'input(type="imtcp" address="127.0.0.1" port="{self.tcp}" ruleset="tcp")\n'
            f'input(type="imuxsock" socket="{self.unix}" ruleset="unix" '
            'useSpecialParser="off" parseHostname="on" ignoreTimestamp="off" '
            'ratelimit.interval="0")\n'
        )
        self.conf = conf

    def start(self) -> None:
        assert RSYSLOGD is not None
        self.starts += 1
        with (self.where / "rsyslogd.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.where / f"pid{self.starts}")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.where / "rsyslogd.out").read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.tcp), timeout=1),
            ):
                if self.unix.exists():
                    return
            time.sleep(0.05)
        raise TimeoutError("rsyslogd did not start")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def received(self, transport: str) -> list[dict[str, Any]]:
        """The messages that reached the file of one input, parsed."""
        path = self.where / f"{transport}.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            pri, host, app, procid, msgid, when, rest = line.split("|", 6)
            sd_id, params, msg = parse_sd(rest)
            assert msg.startswith("|")
            out.append({
                "pri": int(pri), "host": host, "app": app, "procid": procid, "msgid": msgid,
                "time": when, "sd_id": sd_id, "sd": params, "msg": msg[1:],
            })  # fmt: skip
        return out

    def wait_for(self, transport: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(transport)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rsyslog(where: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(where)
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def daemon_with_sinks(
    where: Path, sinks: list[dict[str, Any]] | str, audit: str = "--audit-log"
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path, Raw]]:
    """``gatekeeper serve`` with a config file naming the sinks (or with this config text);
    (process, socket, audit log, a connection). Its diagnostics go to ``where/daemon.log``."""
    sock, log, cfg = where / "s.sock", where / "audit.jsonl", where / "config.toml"
    if isinstance(sinks, str):
        cfg.write_text(sinks, encoding="utf-8")
    else:
        entries = ", ".join(
            "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in sink.items()) + "}"
            for sink in sinks
        )
        cfg.write_text(f"[serve]\naudit_sinks = [{entries}]\n", encoding="utf-8")
    out = (where / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "serve", "--config", str(cfg), "--socket", str(sock),
         "--policy-dir", str(make_policy_dir(where)), "--default-agent", "tester",
         *([audit, str(log)] if audit == "--audit-log" else [audit])],
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_socket(sock, proc)
        conn = Raw(sock)
        try:
            yield proc, sock, log, conn
        finally:
            conn.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def check(conn: Raw, rid: int, command: str, **extra: Any) -> tuple[dict[str, Any], float]:
    """One check and how long its answer took (s)."""
    start = time.monotonic()
    conn.send(id=rid, op="check", command=command, cwd="/tmp", **extra)
    reply = conn.recv()
    return reply, time.monotonic() - start


def status(sock: Path) -> dict[str, Any]:
    conn = Raw(sock)
    try:
        conn.send(id="st", op="status")
        return conn.recv()
    finally:
        conn.close()


def local_lines(log: Path) -> dict[int, tuple[dict[str, Any], bytes]]:
    return {rec["seq"]: (rec, line.raw) for line, rec in read_records(log)}


@needs_rsyslog
def test_records_reach_rsyslog_over_udp_tcp_and_a_unix_socket(
    where: Path, rsyslog: Rsyslog
) -> None:
    sinks = [
        {"kind": "syslog", "address": f"udp://127.0.0.1:{rsyslog.udp}", "facility": "local0"},
        {"kind": "syslog", "address": f"tcp://127.0.0.1:{rsyslog.tcp}"},
        {"kind": "syslog", "address": f"unix://{rsyslog.unix}", "facility": "authpriv"},
    ]
    with daemon_with_sinks(where, sinks) as (proc, _sock, log, conn):
        context = {"harness": "claude-code", "session": "sess-42"}
        assert check(conn, 1, "echo hi", context=context)[0]["decision"] == "allow"
        assert check(conn, 2, 'rm -rf "a]b\\c"', context=context)[0]["decision"] == "deny"
        assert check(conn, 3, "curl example.com")[0]["decision"] == "ask"
        conn.send(id=4, op="run", command="printf x", cwd=str(where))
        conn.until(4, "exit")
        pid = str(proc.pid)
    local = local_lines(log)  # start, 3 checks, run decision + outcome, stop
    assert [r["kind"] for r, _ in local.values()] == ["start"] + ["decision"] * 4 + [
        "outcome",
        "stop",
    ]
    for transport, facility in (("udp", 16), ("tcp", 1), ("unix", 10)):
        got = rsyslog.wait_for(transport, len(local))
        # every record, in order, each exactly as in the local log
        assert [int(m["sd"]["seq"]) for m in got] == list(local), transport
        for m in got:
            rec, raw = local[int(m["sd"]["seq"])]
            assert m["msg"].encode() == raw
            assert (m["app"], m["procid"], m["msgid"]) == ("gatekeeper", pid, rec["kind"])
            assert m["host"] == socket.gethostname()
            assert m["sd_id"] == SD_ID
            assert m["sd"]["hash"] == rec["hash"]
            assert m["time"][:19] == rec["time"][:19]
        deny = got[2]
        assert deny["pri"] == facility * 8 + 4  # warning
        assert deny["sd"] == {
            "kind": "decision", "op": "check", "agent": "tester", "decision": "deny",
            "rule": "rm *", "rule_source": deny["sd"]["rule_source"], "decided_by": "policy",
            "command": 'rm -rf "a]b\\c"', "cwd": "/tmp", "session": "sess-42",
            "harness": "claude-code", "client_pid": deny["sd"]["client_pid"],
            "time": local[3][0]["time"], "seq": "3", "hash": local[3][0]["hash"],
        }  # fmt: skip
        assert deny["sd"]["rule_source"].endswith("tester.md:16")
        assert [m["pri"] - facility * 8 for m in got[1:4]] == [6, 4, 5]  # allow, deny, ask
        outcome = got[5]["sd"]
        assert (outcome["outcome"], outcome["exit"], outcome["ref"]) == ("exit", "0", "5")


@needs_rsyslog
def test_a_receiver_that_stops_or_dies_costs_no_decision_and_no_local_record(
    where: Path, rsyslog: Rsyslog
) -> None:
    sink = {"kind": "syslog", "address": f"tcp://127.0.0.1:{rsyslog.tcp}", "queue": 50}
    slowest = 0.0
    with daemon_with_sinks(where, [sink]) as (_proc, sock, log, conn):

        def phase(name: str, count: int) -> None:
            nonlocal slowest
            for i in range(count):
                reply, took = check(conn, i, f"echo {name} {i}")
                assert reply["decision"] == "allow", reply
                slowest = max(slowest, took)

        phase("before", 20)
        assert len(rsyslog.wait_for("tcp", 21)) == 21  # start + 20

        rsyslog.signal(signal.SIGSTOP)  # alive but not reading
        phase("paused", 100)
        rsyslog.signal(signal.SIGCONT)
        assert len(rsyslog.wait_for("tcp", 121)) == 121  # the kernel held them: none lost
        assert status(sock)["audit_sinks"][0]["dropped"] == 0

        rsyslog.kill()  # gone
        phase("down", 300)
        time.sleep(0.5)
        down = status(sock)["audit_sinks"][0]
        assert down["ok"] is False
        assert down["dropped"] >= 200  # a queue of 50 kept the newest
        assert down["queued"] <= 50
        assert down["errors"] >= 1
        assert down["last_error"]
        shown = subprocess.run(
            [sys.executable, "-m", "gatekeeper", "status", "--socket", str(sock)],
            capture_output=True, text=True, check=False, timeout=30,
        ).stdout  # fmt: skip
        assert "audit sink syslog" in shown and "FAILING" in shown, shown

        rsyslog.start()  # back on the same port: records flow again
        phase("back", 20)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = rsyslog.received("tcp")
            if sum('"echo back ' in m["msg"] for m in got) == 20:
                break
            time.sleep(0.1)
        assert sum('"echo back ' in m["msg"] for m in got) == 20
        back = status(sock)["audit_sinks"][0]
        assert back["ok"] is True
        assert back["queued"] == 0
    assert slowest < 1.0, f"a check took {slowest:.3f} s"
    # The local log has every record and its chain holds.
    commands = [rec.get("command") for rec, _ in local_lines(log).values()]
    for name, count in (("before", 20), ("paused", 100), ("down", 300), ("back", 20)):
        assert sum(1 for c in commands if c and c.startswith(f"echo {name} ")) == count
    verify = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "audit", "verify", "--audit-log", str(log)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The outage is in the daemon's log once, and so is the recovery, not once per record.
    diagnostics = (where / "daemon.log").read_text()
    assert diagnostics.count("records wait in its queue") == 1, diagnostics
    assert diagnostics.count("sending again") == 1, diagnostics


def doc_block(after: str) -> str:
    """The first fenced block of docs/audit.md after the line that ends with ``after``."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    rest = text[text.index(after + "\n") :]
    start = rest.index("```")
    body = rest[rest.index("\n", start) + 1 :]
    return body[: body.index("```")]


@needs_rsyslog
def test_the_central_rsyslog_example_in_the_docs_keeps_a_verifiable_copy(where: Path) -> None:
    port = free_port(socket.SOCK_STREAM)
    central = where / "central"
    conf = where / "central.conf"
    conf.write_text(
        f'global(workDirectory="{where}")\n'
        + doc_block("`/etc/rsyslog.d/30-gatekeeper-central.conf`:")
        .replace("/var/log/gatekeeper", str(central))
        .replace('port="6514"', f'port="{port}"')
    )
    client_config = (
        doc_block("On each developer machine, `~/.config/gatekeeper/config.toml`:")
        .replace("logs.example.com", "127.0.0.1")
        .replace("6514", str(port))
    )
    assert RSYSLOGD is not None
    with (where / "rsyslogd.out").open("wb") as out:
        server = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(where / "pid")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert server.poll() is None, (where / "rsyslogd.out").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with daemon_with_sinks(where, client_config) as (_proc, _sock, log, conn):
            for i, command in enumerate(["echo héllo ✓", "rm -rf build", "curl x", 'echo "]"']):
                check(conn, i, command, context={"session": "s1"})
            conn.send(id="r", op="run", command="printf ok", cwd=str(where))
            conn.until("r", "exit")
        copy = central / f"{socket.gethostname()}.jsonl"
        local = log.read_bytes()
        deadline = time.monotonic() + 30
        while (not copy.exists() or copy.read_bytes() != local) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(10)
    assert copy.read_bytes() == local  # the same records, byte for byte, the stop included
    for args in (["audit", "verify"], ["audit", "--decision", "deny"]):
        proc = subprocess.run(
            [sys.executable, "-m", "gatekeeper", *args, "--audit-log", str(copy)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rm -rf build" in proc.stdout


# --------------------------------------------------------------------------------------------
# journald


class JournalSocket:
    """A Unix datagram socket of our own where the journal's would be."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(30)
        self.memfds = 0

    def entry(self) -> dict[str, str]:
        fds = array.array("i")
        data, ancdata, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if fds:
            assert data == b""  # the entry is in the memfd, sealed
            fd = fds[0]
            try:
                seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
                assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SHRINK
                size = os.fstat(fd).st_size
                data = os.pread(fd, size, 0)
            finally:
                os.close(fd)
            self.memfds += 1
        return parse_journal(data)

    def close(self) -> None:
        self.sock.close()


def test_journald_wire_format_on_a_socket_of_our_own(where: Path) -> None:
    journal = JournalSocket(where / "journal.sock")
    sinks = [
        {"kind": "journald", "socket": str(where / "journal.sock")},
        {"kind": "journald", "socket": str(where / "nobody-here.sock")},
    ]
    big = "echo " + "x" * 300_000  # larger than a datagram may be: sent as a memfd
    try:
        with daemon_with_sinks(where, sinks) as (proc, sock, log, conn):
            reply, _ = check(conn, 1, "rm -rf /tmp/nothing\necho two", context={"session": "s9"})
            assert reply["decision"] == "deny"
            assert check(conn, 2, big)[0]["decision"] in ("allow", "ask")
            entries = [journal.entry() for _ in range(3)]  # start, deny, big
            stats = status(sock)["audit_sinks"]
        local = local_lines(log)
    finally:
        journal.close()
    start, deny, large = entries
    assert start["GATEKEEPER_KIND"] == "start"
    assert start["MESSAGE"].startswith(f"daemon started (pid {proc.pid}")
    assert deny["SYSLOG_IDENTIFIER"] == "gatekeeper"
    assert deny["PRIORITY"] == "4"
    assert deny["GATEKEEPER_AGENT"] == "tester"
    assert deny["GATEKEEPER_DECISION"] == "deny"
    assert deny["GATEKEEPER_RULE"] == "rm *"
    assert deny["GATEKEEPER_COMMAND"] == "rm -rf /tmp/nothing\necho two"
    assert deny["GATEKEEPER_CWD"] == "/tmp"
    assert deny["GATEKEEPER_SESSION"] == "s9"
    assert deny["GATEKEEPER_SEQ"] == "2"
    assert deny["GATEKEEPER_HASH"] == local[2][0]["hash"]
    assert deny["MESSAGE"].startswith("tester: deny rm -rf /tmp/nothing⏎echo two (rule")
    assert large["GATEKEEPER_COMMAND"] == big
    assert large["GATEKEEPER_HASH"] == local[3][0]["hash"]
    assert journal.memfds == 1
    # The sink with no journal behind it: counted, reported, decisions unaffected.
    good, missing = stats
    assert (good["ok"], good["sent"], good["dropped"]) == (True, 3, 0)
    assert missing["ok"] is False
    assert missing["sent"] == 0
    assert "No such file or directory" in missing["last_error"]


def test_a_journal_that_is_full_costs_no_decision(where: Path) -> None:
    """A receiver that never reads: its socket's queue fills (net.unix.max_dgram_qlen), sends
    block and time out; decisions go on, drops are counted, and reading again drains it."""
    journal = JournalSocket(where / "journal.sock")
    sink = {"kind": "journald", "socket": str(where / "journal.sock"), "queue": 20}
    slowest = 0.0
    try:
        with daemon_with_sinks(where, [sink]) as (_proc, sock, log, conn):
            for i in range(200):
                reply, took = check(conn, i, f"echo full {i}")
                assert reply["decision"] == "allow"
                slowest = max(slowest, took)
            deadline = time.monotonic() + 20
            while status(sock)["audit_sinks"][0]["ok"] and time.monotonic() < deadline:
                time.sleep(0.1)
            full = status(sock)["audit_sinks"][0]
            assert full["ok"] is False
            assert full["last_error"] == "the receiver did not take the record in time"
            assert full["dropped"] >= 150
            seen = []
            while True:  # read again: what is queued arrives, the newest included
                entry = journal.entry()
                seen.append(entry["GATEKEEPER_SEQ"])
                if entry.get("GATEKEEPER_COMMAND") == "echo full 199":
                    break
            assert status(sock)["audit_sinks"][0]["ok"] is True
        assert len(local_lines(log)) == 202  # start, 200 checks, stop: all on the local log
    finally:
        journal.close()
    assert slowest < 1.0, f"a check took {slowest:.3f} s"
    assert len(seen) < 60  # the oldest were dropped


@pytest.mark.skipif(
    not JOURNAL.is_socket(),
    reason=f"no journald on this machine ({JOURNAL} is not a socket); the wire format is "
    "tested against a socket of the test's own",
)
def test_records_reach_the_real_journal(where: Path) -> None:
    journalctl = shutil.which("journalctl")
    assert journalctl is not None
    with daemon_with_sinks(where, [{"kind": "journald"}]) as (_proc, _sock, log, conn):
        check(conn, 1, f"rm -rf /tmp/{where.name}", context={"session": where.name})
    deny = next(rec for rec, _ in local_lines(log).values() if rec["kind"] == "decision")
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        out = subprocess.run(
            [journalctl, "-t", "gatekeeper", f"GATEKEEPER_HASH={deny['hash']}", "-o", "json"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
        found = [json.loads(line) for line in out.splitlines() if line.strip()]
        time.sleep(0.2)
    assert found, "the record did not reach the journal"
    entry = found[0]
    assert entry["SYSLOG_IDENTIFIER"] == "gatekeeper"
    assert entry["GATEKEEPER_DECISION"] == "deny"
    assert entry["GATEKEEPER_SESSION"] == where.name
    assert entry["PRIORITY"] == "4"


def test_no_sink_means_an_empty_list(where: Path) -> None:
    with daemon_with_sinks(where, []) as (_proc, sock, _log, _conn):
        assert status(sock)["audit_sinks"] == []


def test_sinks_without_an_audit_log_send_nothing_and_stop_cleanly(where: Path) -> None:
    journal = JournalSocket(where / "journal.sock")
    sink = {"kind": "journald", "socket": str(where / "journal.sock")}
    try:
        with daemon_with_sinks(where, [sink], "--no-audit") as (proc, sock, _log, conn):
            assert check(conn, 1, "echo hi")[0]["decision"] == "allow"
            assert status(sock)["audit_sinks"][0]["sent"] == 0
            proc.terminate()
            assert proc.wait(15) == 0
    finally:
        journal.close()
    assert "the audit log is off: nothing is sent" in (where / "daemon.log").read_text()
