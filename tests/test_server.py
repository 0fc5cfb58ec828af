"""The daemon in-process, on a real Unix socket, spoken to with raw bytes."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.server import ServeConfig
from tests.daemon_util import Raw, ThreadDaemon, make_policy_dir, processes_with, short_dir


@pytest.fixture
def env_dir() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


_OPEN: list[Raw] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def daemon(env_dir: Path) -> Iterator[ThreadDaemon]:
    config = ServeConfig(
        socket_path=env_dir / "s.sock",
        policy_dir=make_policy_dir(env_dir),
        default_agent="tester",
        audit_log=env_dir / "audit.jsonl",
        approval_timeout=5,
        grace=1,
        approvers_need_tty=False,
        watch_interval=0.2,
    )
    with ThreadDaemon(config) as d:
        yield d


def connect(d: ThreadDaemon) -> Raw:
    raw = Raw(d.config.socket_path)
    _OPEN.append(raw)
    return raw


def test_socket_and_directory_modes(daemon: ThreadDaemon) -> None:
    path = daemon.config.socket_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_check_replies_with_decision_and_parts(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    c.send(id=7, op="check", command="echo hi && rm -rf x", cwd="/tmp")
    msg = c.recv()
    assert msg["id"] == 7
    assert msg["decision"] == "deny"
    assert [p["subject"] for p in msg["parts"]] == ["echo hi", "rm -rf x"]
    assert msg["parts"][1]["rule"]["source"] == "tester.md:16"
    c.send(id="s", op="check", path="a.txt", permission="write", cwd="/tmp")
    assert c.recv()["decision"] == "ask"


def test_check_without_cwd_uses_the_clients_directory(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    c.send(id=1, op="check", command="echo x > out.txt")
    msg = c.recv()
    write = next(p for p in msg["parts"] if p["permission"] == "write")
    assert write["subject"] == "out.txt"


def test_root_beside_cwd_and_the_harness_context_reach_the_audit(
    daemon: ThreadDaemon, env_dir: Path
) -> None:
    c = connect(daemon)
    ctx = {"harness": "claude-code", "session": "s-1", "call": "toolu_9", "mode": "default"}
    # Old clients: cwd is the root. New ones say both; the write's subject stays relative
    # to the root wherever the line starts.
    c.send(id=1, op="check", command="echo x > out.txt", cwd="/p/sub", root="/p", context=ctx)
    msg = c.recv()
    assert [p["subject"] for p in msg["parts"] if p["permission"] == "write"] == ["sub/out.txt"]
    c.send(id=2, op="check", path="a.txt", permission="write", root="/p")  # cwd = root
    assert [p["subject"] for p in c.recv()["parts"]] == ["a.txt"]
    c.send(id=3, op="check", command="echo hi", cwd="/elsewhere", root="/p")
    parts = c.recv()["parts"]
    assert ["external_directory", "/elsewhere"] in [[p["permission"], p["subject"]] for p in parts]
    (env_dir / "sub").mkdir()
    c.send(id=4, op="run", command="pwd", cwd=str(env_dir / "sub"), root=str(env_dir), context=ctx)
    assert c.until(4, "exit")[-1]["code"] == 0
    records = [json.loads(x) for x in (env_dir / "audit.jsonl").read_text().splitlines()]
    mine = [r for r in records if r.get("kind") == "decision" and r.get("id") in (1, 4)]
    assert [(r["id"], r["root"], r["context"]) for r in mine] == [
        (1, "/p", ctx),
        (4, str(env_dir), ctx),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"root": "relative/dir"},
        {"root": 7},
        {"context": "a string"},
        {"context": {"harness": 3}},
        {"context": {"": "x"}},
        {"context": {f"k{i}": "v" for i in range(17)}},
        {"context": {"session": "x" * 1025}},
        {"context": {"session": "a\x00b"}},
    ],
)
def test_bad_root_or_context_is_refused(daemon: ThreadDaemon, fields: dict[str, Any]) -> None:
    c = connect(daemon)
    c.send(id=1, op="check", command="ls", cwd="/p", **fields)
    assert c.recv()["error"]["code"] == "bad_request"
    c.send(id=2, op="status")  # the connection goes on
    assert "error" not in c.recv()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{broken\n", "bad_request"),
        (b"42\n", "bad_request"),
        (b'{"v":1,"id":1}\n', "bad_request"),
        (b'{"v":1,"id":1,"op":"check","command":3}\n', "bad_request"),
        (b'{"v":1,"id":1,"op":"dance"}\n', "unknown_op"),
        (b'{"v":9,"id":1,"op":"status"}\n', "unsupported_version"),
        (b'{"v":1,"id":1,"op":"check","command":"ls \xff\xfe"}\n', "bad_request"),
        (b"\xff\xfe\n", "bad_request"),
        (b'{"v":1,"id":1,"op":"check","command":"ls\\u0000; rm -rf /"}\n', "bad_request"),
        (b'{"v":1,"id":1,"op":"check","command":"ls","agent":"nobody"}\n', "unknown_agent"),
        (b'{"v":1,"id":1,"op":"cancel","target":"nope"}\n', "not_found"),
        (b'{"v":1,"id":1,"op":"answer","request":"p999","answer":"once"}\n', "not_found"),
    ],
)
def test_bad_input_gets_an_error_and_the_connection_stays_usable(
    daemon: ThreadDaemon, data: bytes, code: str
) -> None:
    c = connect(daemon)
    c.send_bytes(data)
    msg = c.recv()
    assert msg["error"]["code"] == code
    assert msg["error"]["message"]
    c.send(id="after", op="status")
    assert c.recv()["id"] == "after"


def test_line_over_one_mebibyte_is_refused_and_closed(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    big = b'{"v":1,"id":1,"op":"check","command":"' + b"a" * (1 << 20) + b'"}\n'
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        c.send_bytes(big)
        c.send_bytes(big)
    # Either way the daemon answers too_large before closing, if the client can still read.
    other = connect(daemon)
    other.send(id=1, op="status")
    assert other.recv()["version"]


def test_too_large_reply(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    c.send_bytes(b"x" * ((1 << 20) + 10))
    msg = c.recv()
    assert msg["error"]["code"] == "too_large"
    with pytest.raises(EOFError):
        c.recv()


def test_many_requests_pipelined_on_one_connection(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    for i in range(50):
        c.send(id=i, op="check", command=f"echo {i}", cwd="/tmp")
    ids = sorted(c.recv()["id"] for _ in range(50))
    assert ids == list(range(50))


def test_hundred_clients_at_once(daemon: ThreadDaemon) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            c = connect(daemon)
            c.send(id=i, op="check", command="echo hi | cat", cwd="/tmp")
            results.append(c.recv()["decision"])
            c.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == ["allow"] * 100


def test_run_streams_output_and_exit_status(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id="r", op="run", command="printf 'a\\nb' && printf err >&2 && exit 3", cwd=str(env_dir))
    events = c.until("r", "exit", "blocked")
    assert events[0]["event"] == "decision" and events[0]["decision"] == "allow"
    out = "".join(e["data"] for e in events if e.get("stream") == "stdout")
    err = "".join(e["data"] for e in events if e.get("stream") == "stderr")
    assert (out, err) == ("a\nb", "err")
    assert events[-1]["event"] == "exit" and events[-1]["code"] == 3
    assert events[-1]["duration_ms"] >= 0


def test_run_in_cwd_with_env_and_stdin(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(
        id=1,
        op="run",
        command='pwd; echo "$GREETING"; cat',
        cwd=str(env_dir),
        env={"GREETING": "hello", "PATH": os.environ["PATH"]},
        stdin="from stdin",
    )
    events = c.until(1, "exit", "blocked")
    out = "".join(e["data"] for e in events if e.get("stream") == "stdout")
    assert out == f"{env_dir}\nhello\nfrom stdin"


def test_binary_output_is_base64(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id=1, op="run", command="printf '\\377\\376ok'", cwd=str(env_dir))
    events = c.until(1, "exit")
    chunks = [e for e in events if e.get("event") == "output"]
    data = b"".join(
        base64.b64decode(e["data"]) if e.get("encoding") == "base64" else e["data"].encode()
        for e in chunks
    )
    assert data == b"\xff\xfeok"
    assert any(e.get("encoding") == "base64" for e in chunks)


def test_denied_run_is_blocked_and_never_runs(daemon: ThreadDaemon, env_dir: Path) -> None:
    victim = env_dir / "victim"
    victim.write_text("x")
    c = connect(daemon)
    c.send(id=1, op="run", command=f"echo hi; rm {victim}", cwd=str(env_dir))
    events = c.until(1, "exit", "blocked")
    assert events[-1]["event"] == "blocked"
    assert events[-1]["decision"] == "deny"
    assert "rm" in events[-1]["reason"]
    assert victim.exists()


def test_timeout_kills_the_whole_tree(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(
        id=1,
        op="run",
        command="sleep 913.5 & sleep 913.5; echo never",
        cwd=str(env_dir),
        timeout=0.5,
    )
    events = c.until(1, "exit")
    assert events[-1]["timed_out"] is True
    assert events[-1]["code"] < 0
    time.sleep(0.3)
    assert processes_with("913.5") == []


def test_cancel_kills_the_run(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id="long", op="run", command="sleep 914.5", cwd=str(env_dir))
    assert c.recv()["event"] == "decision"
    time.sleep(0.3)
    assert processes_with("914.5") != []
    c.send(id="c", op="cancel", target="long")
    msgs = [c.recv(), c.recv()]
    assert {"id": "c", "ok": True} in msgs
    exit_event = next(m for m in msgs if m.get("event") == "exit")
    assert exit_event["killed"] == "cancelled by the client"
    time.sleep(0.2)
    assert processes_with("914.5") == []


def test_client_disconnect_kills_the_run(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id=1, op="run", command="sleep 915.5; sleep 915.5", cwd=str(env_dir))
    c.recv()
    time.sleep(0.3)
    assert processes_with("915.5") != []
    c.close()
    deadline = time.monotonic() + 5
    while processes_with("915.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with("915.5") == []
    other = connect(daemon)
    runs = -1
    while runs != 0 and time.monotonic() < deadline + 5:
        other.send(id=2, op="status")
        runs = other.recv()["runs"]
        time.sleep(0.02)
    assert runs == 0


def test_ask_waits_then_times_out_to_deny(env_dir: Path) -> None:
    config = ServeConfig(
        socket_path=env_dir / "t.sock",
        policy_dir=make_policy_dir(env_dir),
        default_agent="tester",
        approval_timeout=0.5,
        approvers_need_tty=False,
    )
    with ThreadDaemon(config) as d:
        c = connect(d)
        c.send(id=1, op="run", command="touch made", cwd=str(env_dir))
        events = c.until(1, "exit", "blocked")
        assert [e["event"] for e in events] == ["decision", "waiting", "decision", "blocked"]
        assert "nobody answered" in events[-1]["reason"]
        assert not (env_dir / "made").exists()


class Requester:
    """A run requested by another process (as an agent would), events read from its stdout."""

    def __init__(self, d: ThreadDaemon, command: str, cwd: Path) -> None:
        code = (
            "import json,sys\n"
            "from gatekeeper.client import Client\n"
            "c = Client(sys.argv[1])\n"
            "for ev in c.run(sys.argv[2], cwd=sys.argv[3]):\n"
            "    ev.pop('raw', None)\n"
            "    print(json.dumps(ev), flush=True)\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(d.config.socket_path), command, str(cwd)],
            stdout=subprocess.PIPE,
        )

    def next(self) -> dict[str, object]:
        import json

        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the requester ended early"
        event: dict[str, object] = json.loads(line)
        return event

    def rest(self) -> list[dict[str, object]]:
        import json

        out, _ = self.proc.communicate(timeout=20)
        return [json.loads(x) for x in out.splitlines()]


def approve(d: ThreadDaemon, answer: str, **extra: Any) -> dict[str, object]:
    """Answer the first pending request from this process (not the requester's)."""
    from gatekeeper.client import Client

    with Client(d.config.socket_path) as c:
        for _ in range(250):
            pending = c.pending()
            if pending:
                break
            time.sleep(0.02)
        return c.answer(pending[0]["request"], answer, **extra)


def test_approve_once_runs_it(daemon: ThreadDaemon, env_dir: Path) -> None:
    r = Requester(daemon, "touch made", env_dir)
    assert r.next()["decision"] == "ask"
    assert r.next()["event"] == "waiting"
    approve(daemon, "once")
    events = r.rest()
    assert events[0]["event"] == "decision" and events[0]["by"] == "human"
    assert events[-1]["event"] == "exit" and events[-1]["code"] == 0
    assert (env_dir / "made").exists()


def test_reject_carries_the_message(daemon: ThreadDaemon, env_dir: Path) -> None:
    r = Requester(daemon, "touch made", env_dir)
    approve(daemon, "reject", message="use the build dir instead")
    events = r.rest()
    assert events[-1]["event"] == "blocked"
    assert events[-1]["message"] == "use the build dir instead"
    assert not (env_dir / "made").exists()


def test_always_adds_a_rule_for_the_daemons_life(daemon: ThreadDaemon, env_dir: Path) -> None:
    r = Requester(daemon, "touch one", env_dir)
    result = approve(daemon, "always", pattern="touch *")
    assert result["pattern"] == "touch *"
    assert r.rest()[-1]["event"] == "exit"
    c = connect(daemon)
    c.send(id=2, op="run", command="touch two", cwd=str(env_dir))
    events = c.until(2, "exit", "blocked")
    assert events[0]["decision"] == "allow"
    assert events[0]["parts"][0]["rule"]["pattern"] == "touch *"
    assert (env_dir / "two").exists()
    # An "always" never overrides a deny.
    c.send(id=3, op="check", command="touch x; rm x", cwd=str(env_dir))
    assert c.recv()["decision"] == "deny"


def test_requesting_client_cannot_approve_itself(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id=1, op="run", command="touch made", cwd=str(env_dir))
    waiting = c.until(1, "waiting")[-1]
    c.send(id=2, op="answer", request=waiting["request"], answer="once")
    reply = c.until(2)[-1]
    assert reply["error"]["code"] == "forbidden"
    assert "own request" in reply["error"]["message"]


def test_command_run_by_the_daemon_cannot_approve(daemon: ThreadDaemon, env_dir: Path) -> None:
    pending = connect(daemon)
    pending.send(id=1, op="run", command="touch made", cwd=str(env_dir))
    pending.until(1, "waiting")
    script = env_dir / "approve.py"
    script.write_text(
        "from gatekeeper.client import Client, ClientError\n"
        f"c = Client({str(daemon.config.socket_path)!r})\n"
        "p = c.pending()[0]\n"
        "try:\n"
        "    c.answer(p['request'], 'once')\n"
        "    print('APPROVED')\n"
        "except ClientError as e:\n"
        "    print('REFUSED', e.code)\n"
    )
    agent = connect(daemon)
    agent.send(
        id="a",
        op="run",
        command=f"{sys.executable} {script}",
        cwd=str(env_dir),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    events = agent.until("a", "exit", "blocked")
    out = "".join(e["data"] for e in events if e.get("stream") == "stdout")
    assert out.strip() == "REFUSED forbidden"
    assert not (env_dir / "made").exists()


def test_env_that_changes_bash_makes_a_run_ask(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(
        id=1,
        op="run",
        command="echo hi",
        cwd=str(env_dir),
        env={"BASH_ENV": str(env_dir / "evil.sh"), "PATH": "/usr/bin:/bin"},
    )
    assert c.recv()["decision"] == "ask"


def test_reload_keeps_old_policy_on_error(daemon: ThreadDaemon) -> None:
    policy_file = daemon.config.policy_dir / "tester.md"
    good = policy_file.read_text()
    c = connect(daemon)
    policy_file.write_text(good.replace('"true": allow', '"true": alow'))
    c.send(id=1, op="reload")
    err = c.recv()["error"]
    assert err["code"] == "policy_error" and "alow" in err["message"]
    c.send(id=2, op="check", command="echo hi", cwd="/tmp")
    assert c.recv()["decision"] == "allow"
    c.send(id=3, op="status")
    assert "alow" in c.recv()["reload_error"]
    policy_file.write_text(good.replace('"echo *": allow', '"echo *": deny'))
    c.send(id=4, op="reload")
    assert c.recv()["ok"] is True
    c.send(id=5, op="check", command="echo hi", cwd="/tmp")
    assert c.recv()["decision"] == "deny"


def test_policy_file_change_reloads_by_itself(daemon: ThreadDaemon) -> None:
    policy_file = daemon.config.policy_dir / "tester.md"
    policy_file.write_text(policy_file.read_text().replace('"echo *": allow', '"echo *": deny'))
    os.utime(policy_file, (time.time() + 5, time.time() + 5))
    c = connect(daemon)
    deadline = time.monotonic() + 5
    decision = "allow"
    while decision != "deny" and time.monotonic() < deadline:
        c.send(id=1, op="check", command="echo hi", cwd="/tmp")
        decision = c.recv()["decision"]
        time.sleep(0.1)
    assert decision == "deny"


def test_subscribe_sees_pending_and_resolved(daemon: ThreadDaemon, env_dir: Path) -> None:
    watcher = connect(daemon)
    watcher.send(id="sub", op="subscribe")
    assert watcher.recv() == {"id": "sub", "ok": True}
    c = connect(daemon)
    c.send(id=1, op="run", command="touch made", cwd=str(env_dir))
    pending = watcher.recv()
    assert pending["event"] == "pending" and pending["command"] == "touch made"
    assert pending["suggested_pattern"] == "touch *"
    c.send(id=2, op="cancel", target=1)
    resolved = watcher.recv()
    assert resolved["event"] == "resolved" and resolved["request"] == pending["request"]
    events = c.until(1, "blocked", "exit")
    assert events[-1]["event"] == "blocked"


def test_other_users_are_refused(daemon: ThreadDaemon) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to connect as another user")
    path = daemon.config.socket_path
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o666)
    code = (
        "import json,socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        's.sendall(b\'{"v":1,"id":1,"op":"status"}\\n\')\n'
        "print(s.recv(4096).decode())\n"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-c", code, str(path)], capture_output=True, check=True, user=65534
    )
    assert '"forbidden"' in out.stdout.decode()


def test_audit_lines_are_written(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    c.send(id=1, op="check", command="echo hi", cwd="/tmp")
    c.recv()
    log = daemon.config.audit_log
    assert log is not None
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert '"subject":"echo hi"' in log.read_text()


def test_half_closed_client_still_gets_its_run(daemon: ThreadDaemon, env_dir: Path) -> None:
    import socket as _socket

    c = connect(daemon)
    c.send(id=1, op="run", command="sleep 0.3; echo done", cwd=str(env_dir))
    c.sock.shutdown(_socket.SHUT_WR)  # what `socat` and `nc -N` do when their input ends
    events = c.until(1, "exit", "blocked")
    assert events[-1]["event"] == "exit"
    assert events[-1]["code"] == 0
    assert "".join(e.get("data", "") for e in events if e.get("event") == "output") == "done\n"


def test_background_leftovers_end_with_the_run(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id=1, op="run", command="sleep 916.5 >/dev/null 2>&1 & echo started", cwd=str(env_dir))
    events = c.until(1, "exit")
    assert events[-1]["code"] == 0
    deadline = time.monotonic() + 5
    while processes_with("916.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with("916.5") == []


def test_binary_stdin(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(
        id=1,
        op="run",
        command="od -An -tx1",
        cwd=str(env_dir),
        stdin_base64=base64.b64encode(b"\xff\x00\xfe").decode(),
    )
    events = c.until(1, "exit", "blocked")
    out = "".join(e.get("data", "") for e in events if e.get("event") == "output")
    assert out.split() == ["ff", "00", "fe"]


def test_a_refused_ask_gets_a_decision_before_blocked(env_dir: Path) -> None:
    config = ServeConfig(
        socket_path=env_dir / "b.sock",
        policy_dir=make_policy_dir(env_dir),
        default_agent="tester",
        approval_timeout=0.3,
        approvers_need_tty=False,
    )
    with ThreadDaemon(config) as d:
        c = connect(d)
        c.send(id=1, op="run", command="touch x", cwd=str(env_dir))
        events = c.until(1, "exit", "blocked")
        kinds = [(e["event"], e.get("decision")) for e in events]
        assert kinds == [
            ("decision", "ask"),
            ("waiting", None),
            ("decision", "deny"),
            ("blocked", "deny"),
        ]
        assert events[2]["by"] == "timeout"


def test_check_with_wait_returns_the_humans_answer(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id="w", op="check", command="echo hi", cwd=str(env_dir), wait=True)
    assert c.recv()["decision"] == "allow"  # nothing to wait for
    # The requester is another process (as a plugin would be); this test is the approver.
    code = (
        "import json,sys\n"
        "from gatekeeper.client import Client\n"
        "c = Client(sys.argv[1])\n"
        "rid = c.send('check', command='touch x', cwd=sys.argv[2], wait=True)\n"
        "while True:\n"
        "    m = c.receive_for(rid)\n"
        "    if m.get('event') != 'waiting':\n"
        "        print(json.dumps(m)); break\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(daemon.config.socket_path), str(env_dir)],
        stdout=subprocess.PIPE,
    )
    approve(daemon, "reject", message="not now")
    out, _ = proc.communicate(timeout=20)
    final = json.loads(out)
    assert (final["decision"], final["by"], final["message"]) == ("deny", "human", "not now")
    assert "rejected by a human" in final["reason"]


def test_cancel_ends_a_waiting_check(daemon: ThreadDaemon, env_dir: Path) -> None:
    c = connect(daemon)
    c.send(id="w", op="check", command="touch y", cwd=str(env_dir), wait=True)
    assert c.recv()["event"] == "waiting"
    c.send(id="c", op="cancel", target="w")
    msgs = [c.recv(), c.recv()]
    final = next(m for m in msgs if m.get("id") == "w")
    assert (final["decision"], final["by"]) == ("deny", "cancelled")


def test_status_names_the_protocol_version(daemon: ThreadDaemon) -> None:
    c = connect(daemon)
    c.send(id="s", op="status")
    status = c.recv()
    assert status["protocol"] == 1
    assert status["agents"] == ["tester"]
