"""Faults a real machine has, injected for real: clients that hang up or cancel at once, a
disk that fills up (a small tmpfs), an answer that lands as the timeout fires, one client's
flood, a low file-descriptor limit, half-sent lines, a FIFO among the policies, a replaced
socket, hostile field values, an unreadable policy directory. No mocks: real daemons,
real processes, real file systems (mounting needs root, which CI has)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit import read_lines, read_records, verify
from tests.daemon_util import Raw, make_policy_dir, short_dir, wait_for_socket

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounting a tmpfs and setting limits need root")

# A command the test agent allows ("python3 *") that leaves a mark if it runs to its end.
MARKER_RUN = (
    "python3 -c \"import sys, time; time.sleep(0.4); open(sys.argv[1], 'w').write('ran')\" {path}"
)


@contextlib.contextmanager
def daemon(
    where: Path,
    *extra: str,
    config: dict[str, Any] | None = None,
    nofile: int | None = None,
    policies: Path | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A daemon subprocess on a short socket path; optionally a config file and an fd limit."""
    sock = where / "s.sock"
    args = [
        sys.executable, "-m", "gatekeeper", "serve", "--socket", str(sock),
        "--policy-dir", str(policies or make_policy_dir(where)), "--default-agent", "tester",
    ]  # fmt: skip
    if config:
        cfg = where / "config.toml"
        cfg.write_text("[serve]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items()))
        args += ["--config", str(cfg)]
    if "--audit-log" not in extra:
        args.append("--no-audit")
    args += list(extra)

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = (where / "daemon.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)  # noqa: PLW1509
    try:
        wait_for_socket(sock, proc)
        yield proc, sock
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# 1. Runs die with their client, and with their cancel at any moment


def test_runs_die_when_their_client_hangs_up_at_once(where: Path) -> None:
    marks = [where / f"m{i}" for i in range(100)]
    with daemon(where) as (_proc, sock):
        for m in marks:
            r = Raw(sock)
            r.send(id=1, op="run", command=MARKER_RUN.format(path=m), cwd=str(where))
            r.close()  # and gone
        time.sleep(2.0)
        ran = [m for m in marks if m.exists()]
        # nothing of theirs is left running either
        survivors = subprocess.run(
            ["pgrep", "-f", str(where / "m")], capture_output=True, text=True, check=False
        ).stdout.split()
    assert ran == []
    assert survivors == []


@pytest.mark.parametrize("delay_ms", [0, 1, 3, 10, 30])
def test_a_cancel_at_any_moment_stops_the_run(where: Path, delay_ms: int) -> None:
    rng = random.Random(delay_ms)  # noqa: S311 - seeded timing, not a secret
    with daemon(where) as (_proc, sock):
        r = Raw(sock)
        finals: list[dict[str, Any]] = []
        for i in range(20):
            m = where / f"m{delay_ms}-{i}"
            r.send(id=i, op="run", command=MARKER_RUN.format(path=m), cwd=str(where))
            time.sleep(rng.uniform(0, delay_ms / 1000))
            r.send(id=f"c{i}", op="cancel", target=i)
            events = r.until(i, "exit", "blocked")
            finals.append(events[-1])
        time.sleep(0.8)
        r.close()
    ran = sorted(p.name for p in where.glob(f"m{delay_ms}-*"))
    assert ran == [], finals
    for final in finals:
        # ended either before it started (blocked) or killed while it ran (a signal)
        assert final.get("event") == "blocked" or final.get("code", 0) < 0, final


# --------------------------------------------------------------------------------------------
# 2. A full disk does not break the audit chain, and the daemon recovers by itself


@contextlib.contextmanager
def tmpfs(size: str, inodes: int | None = None) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="gk-tmpfs-"))
    opts = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def fill(disk: Path) -> Path:
    """Fill a file system up to the last byte; the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"x" * size) == size:
                    pass
    finally:
        os.close(fd)
    return filler


def checks(sock: Path, n: int, tag: str) -> list[dict[str, Any]]:
    r = Raw(sock)
    out = []
    try:
        for i in range(n):
            r.send(id=i, op="check", command=f"echo {tag} {i} {'y' * 300}", cwd="/tmp")
            out.append(r.recv())
    finally:
        r.close()
    return out


@needs_root
def test_a_full_disk_leaves_every_record_whole_and_the_daemon_recovers(where: Path) -> None:
    with tmpfs("192k") as disk:
        log = disk / "audit.jsonl"
        with daemon(where, "--audit-log", str(log), "--audit-fsync", "always") as (proc, sock):
            assert all("decision" in r for r in checks(sock, 5, "before"))
            filler = fill(disk)
            during = checks(sock, 30, "full")
            refused = [r for r in during if "error" in r]
            assert refused, "the disk was full, yet every record was written"
            assert all("audit log" in r["error"]["message"] for r in refused)
            assert verify(read_lines(log)).ok  # no half record, no record glued to one
            r = Raw(sock)
            r.send(id="s", op="status")
            status = r.recv()
            r.close()
            assert status["audit_error"]
            filler.unlink()  # space returns: no restart needed
            after = checks(sock, 10, "after")
            assert all("decision" in r for r in after), after
            assert proc.poll() is None
        v = verify(read_lines(log))
        assert v.ok, v.problems
        lines = log.read_bytes().split(b"\n")
        assert lines[-1] == b""
        assert all(line.endswith(b"}") for line in lines[:-1])


@needs_root
def test_a_torn_log_on_a_full_disk_starts_and_heals_when_space_returns(where: Path) -> None:
    with tmpfs("192k") as disk:
        log = disk / "audit.jsonl"
        with daemon(where, "--audit-log", str(log)) as (proc, sock):
            checks(sock, 5, "before")
            proc.kill()  # a crash …
            proc.wait()
        whole = log.read_bytes().split(b"\n")[-2]
        with log.open("ab") as f:
            f.write(whole[: len(whole) // 2])  # … in the middle of a record
        filler = fill(disk)
        with daemon(where, "--audit-log", str(log)) as (_proc, sock):
            assert all("error" in r for r in checks(sock, 3, "full"))
            filler.unlink()
            assert all("decision" in r for r in checks(sock, 3, "after"))
        v = verify(read_lines(log))
        assert v.ok, v.problems
        kinds = [rec["kind"] for _, rec in read_records(log)]
        assert "recovery" in kinds
        starts = [rec for _, rec in read_records(log) if rec["kind"] == "start"]
        assert [s["previous"] for s in starts] == ["new", "crashed"]


@needs_root
def test_a_log_that_cannot_rotate_is_written_on(where: Path) -> None:
    with tmpfs("1m", inodes=6) as disk:
        log = disk / "audit.jsonl"
        config = {"audit_max_bytes": 4000}
        with daemon(where, "--audit-log", str(log), config=config) as (_proc, sock):
            with contextlib.suppress(OSError):
                for i in range(10):
                    (disk / f"inode{i}").write_bytes(b"")  # no inode left for a new file
            replies = checks(sock, 40, "rotate")
            assert all("decision" in r for r in replies), replies[:3]
        assert verify(read_lines(log)).ok


# --------------------------------------------------------------------------------------------
# 3. An answer that lands as the timeout fires: one outcome, the same for everyone

REQUESTER = """
import json, socket, sys, time
path, count, cwd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX); s.connect(path)
for i in range(count):
    cmd = json.dumps({"v": 1, "id": i, "op": "run", "command": f"touch t{i}", "cwd": cwd})
    s.sendall(cmd.encode() + b"\\n")
    time.sleep(0.03)
buf, finals = b"", {}
while len(finals) < count:
    data = s.recv(65536)
    if not data:
        break
    buf += data
    while b"\\n" in buf:
        line, buf = buf.split(b"\\n", 1)
        msg = json.loads(line)
        if msg.get("event") in ("exit", "blocked") or "error" in msg:
            finals[msg["id"]] = msg
print(json.dumps(finals))
"""


def test_an_answer_at_the_timeout_gets_one_consistent_outcome(where: Path) -> None:
    timeout = 0.25
    trials = 100
    policies = make_policy_dir(where)
    log = where / "audit.jsonl"
    cfg = {"approvers_need_tty": False}
    with daemon(
        where, "--audit-log", str(log), "--approval-timeout", str(timeout),
        config=cfg, policies=policies,
    ) as (_proc, sock):  # fmt: skip
        approver = Raw(sock)
        approver.send(id="sub", op="subscribe")
        requester = subprocess.Popen(
            [sys.executable, "-c", REQUESTER, str(sock), str(trials), str(where)],
            stdout=subprocess.PIPE,
        )
        answers: dict[str, dict[str, Any]] = {}
        resolved: dict[str, str] = {}
        rng = random.Random(7)  # noqa: S311 - seeded timing, not a secret
        due: list[tuple[float, str, int]] = []
        next_answer_id = 0
        deadline = time.monotonic() + 60
        approver.sock.settimeout(0.005)
        while (len(answers) < trials or len(resolved) < trials) and time.monotonic() < deadline:
            now = time.time()
            for when, key, aid in [d for d in due if d[0] <= now]:
                due.remove((when, key, aid))
                approver.send(id=aid, op="answer", request=key, answer="once")
            try:
                msg = approver.recv()
            except TimeoutError:
                continue
            if msg.get("event") == "pending":
                jitter = rng.uniform(-0.02, 0.02)
                when = msg["created"] + msg["timeout_s"] + jitter
                due.append((when, msg["request"], next_answer_id))
                next_answer_id += 1
            elif msg.get("event") == "resolved":
                resolved[msg["request"]] = msg["answer"]
            elif isinstance(msg.get("id"), int):
                answers[str(msg["id"])] = msg
        out, _ = requester.communicate(timeout=60)
        approver.close()
    finals = json.loads(out)
    assert len(finals) == trials
    assert len(resolved) == trials
    outcomes = {
        rec["id"]: rec
        for _, rec in read_records(log)
        if rec["kind"] == "outcome" and "answer" in rec
    }
    approved = sum(1 for a in resolved.values() if a == "once")
    assert 0 < approved < trials, "the answers never raced the timeout: the test tests nothing"
    # Each request: the approver was told ok ⇔ subscribers heard "once" ⇔ it ran ⇔ the audit
    # log says approved. Told "not found" ⇔ timeout everywhere ⇔ blocked.
    ok_answers = sum(1 for a in answers.values() if a.get("ok"))
    assert ok_answers == approved
    for rid, final in finals.items():
        audit = outcomes[int(rid)]
        if final.get("event") == "exit":
            assert audit["answer"] == "once"
        else:
            assert final["by"] == "timeout", final
            assert audit["answer"] == "timeout"
    assert sum(1 for f in finals.values() if f.get("event") == "exit") == approved


# --------------------------------------------------------------------------------------------
# 4. One client's flood does not stall the others


def test_a_flood_of_large_commands_does_not_stall_status(where: Path) -> None:
    """Thirty distinct ~60 KiB commands pipelined by one client: another client's ``status``,
    a check it made before and a small command never seen before are each answered while
    nearly all of the flood is still waiting — by order, not by a stopwatch (the latencies
    are measured in ``benchmarks/bench_socket.py``). The flood's replies are read as they come
    (a reader thread), so the kernel's socket buffer does not hold them up."""
    flood = 30
    events: list[tuple[str, Any]] = []  # in the order they arrived
    lock = threading.Lock()
    with daemon(where) as (_proc, sock):
        probe = Raw(sock)
        probe.send(id="warm", op="check", command="cat notes.txt", cwd="/tmp")
        assert probe.recv()["decision"] == "allow"
        flooder = Raw(sock, timeout=120)
        answered: list[dict[str, Any]] = []

        def read_flood() -> None:
            for _ in range(flood):
                reply = flooder.recv()
                with lock:
                    events.append(("flood", reply["id"]))
                answered.append(reply)

        reader = threading.Thread(target=read_flood)
        reader.start()
        body = b""
        for i in range(flood):
            words = " ".join(f"w{i}x{j}" for j in range(10_000))[: 60 * 1024]
            cmd = f"echo {words}; ls; cat x"
            body += (
                json.dumps({"v": 1, "id": i, "op": "check", "command": cmd, "cwd": "/tmp"}).encode()
                + b"\n"
            )
        flooder.send_bytes(body)
        for rid, fields in (
            ("status", {"op": "status"}),
            ("cached", {"op": "check", "command": "cat notes.txt", "cwd": "/tmp"}),
            ("new", {"op": "check", "command": "echo never seen before", "cwd": "/tmp"}),
        ):
            probe.send(id=rid, **fields)
            reply = probe.recv()
            assert reply["id"] == rid and "error" not in reply, reply
            with lock:
                events.append(("probe", rid))
        reader.join(120)
        probe.close()
        flooder.close()
    assert sorted(r["id"] for r in answered) == list(range(flood))
    assert all(r["decision"] in ("allow", "ask", "deny") for r in answered)
    outstanding = {}
    for n, (who, what) in enumerate(events):
        if who == "probe":
            outstanding[what] = flood - sum(1 for w, _ in events[:n] if w == "flood")
    # Analysis on the event loop would answer each probe only after the lines read before
    # it; one shared queue would put the new command behind the whole flood.
    assert min(outstanding.values()) >= flood - 5, (outstanding, events)


# --------------------------------------------------------------------------------------------
# 5. Limits: a thousand and more clients, half-sent lines, unfinished input


@needs_root
def test_two_thousand_clients_at_a_1024_descriptor_limit(where: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), max(hard, 8192)))
    try:
        with daemon(where, nofile=1024) as (_proc, sock):
            clients: list[socket.socket] = []
            for _ in range(2000):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(str(sock))  # blocking: waits while the daemon's backlog is full
                c.settimeout(20)
                c.sendall(b'{"v":1,"id":1,"op":"status"}\n')
                clients.append(c)
            answered = refused = 0
            for c in clients:
                data = b""
                while not data.endswith(b"\n"):
                    more = c.recv(65536)
                    assert more, "a client got no answer at all"
                    data += more
                msg = json.loads(data.split(b"\n")[0])
                if "error" in msg:
                    assert msg["error"]["code"] == "busy", msg
                    refused += 1
                else:
                    assert msg["id"] == 1
                    answered += 1
                c.close()
            assert answered + refused == 2000
            assert answered >= 500
            r = Raw(sock)  # and it still serves
            r.send(id=2, op="status")
            assert r.recv()["id"] == 2
            r.close()
        assert (where / "daemon.log").stat().st_size < 20_000  # said once, not per client
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_half_sent_line_is_timed_out(where: Path) -> None:
    with daemon(where, config={"idle_line_timeout": 1.0}) as (_proc, sock):
        r = Raw(sock)
        r.send_bytes(b'{"v":1,"id":1,"op":"sta')
        time.sleep(2.5)
        msg = r.recv()
        assert msg["error"]["code"] == "timeout"
        with pytest.raises(EOFError):
            r.recv()
        r.close()


def test_unfinished_input_is_capped_for_all_clients_together(where: Path) -> None:
    with daemon(where, config={"max_buffered_bytes": 2 << 20}) as (_proc, sock):
        clients = [Raw(sock) for _ in range(6)]
        busy = 0
        for c in clients:
            with contextlib.suppress(OSError):
                c.send_bytes(b'{"v":1,"id":1,"op":"check","command":"' + b"a" * (900 << 10))
        time.sleep(0.5)
        for c in clients:
            c.sock.settimeout(0.5)
            with contextlib.suppress(OSError, EOFError, TimeoutError):
                if c.recv().get("error", {}).get("code") == "busy":
                    busy += 1
            c.close()
        assert busy >= 3  # 6 x 900 KiB against 2 MiB in all
        r = Raw(sock)
        r.send(id=2, op="status")
        assert r.recv()["id"] == 2
        r.close()


# --------------------------------------------------------------------------------------------
# 6. The smaller ones


def test_a_fifo_among_the_policies_never_freezes_the_daemon(where: Path) -> None:
    policies = make_policy_dir(where)
    os.mkfifo(policies / "trap.md")
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "serve", "--socket", str(where / "x.sock"),
         "--policy-dir", str(policies), "--no-audit", "--default-agent", "tester"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert b"not a regular file" in proc.stderr
    assert time.monotonic() - began < 15
    (policies / "trap.md").unlink()
    with daemon(where, policies=policies) as (_proc, sock):
        os.mkfifo(policies / "later.md")  # appears while it runs: the reload refuses it
        time.sleep(2.5)
        r = Raw(sock)
        r.send(id=1, op="status")
        status = r.recv()
        assert "not a regular file" in (status["reload_error"] or "")
        r.send(id=2, op="check", command="echo hi", cwd="/tmp")
        assert r.recv()["decision"] == "allow"
        r.close()


def test_a_reload_cannot_drop_the_default_agent(where: Path) -> None:
    policies = make_policy_dir(where)
    (policies / "other.md").write_text("---\npermission: ask\n---\n")
    with daemon(where, policies=policies) as (_proc, sock):
        (policies / "tester.md").unlink()
        r = Raw(sock)
        r.send(id=1, op="reload")
        assert r.recv()["error"]["code"] == "policy_error"
        r.send(id=2, op="check", command="echo hi", cwd="/tmp")
        assert r.recv()["decision"] == "allow"  # the old policies still serve
        r.close()


def test_stopping_never_removes_a_newer_daemons_socket(where: Path) -> None:
    policies = make_policy_dir(where)
    sock = where / "s.sock"
    with daemon(where, policies=policies) as (first, _sock):
        sock.unlink()  # someone removed it, and a second daemon took the path
        second_dir = where / "two"
        second_dir.mkdir()
        second = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "serve", "--socket", str(sock),
             "--policy-dir", str(policies), "--no-audit", "--default-agent", "tester"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_socket(sock, second)
            first.send_signal(signal.SIGTERM)
            first.wait(15)
            assert sock.exists()
            r = Raw(sock)
            r.send(id=1, op="status")
            assert r.recv()["id"] == 1
            r.close()
        finally:
            second.terminate()
            second.wait(15)


def test_hostile_field_values_get_a_reply_and_spare_the_other_runs(where: Path) -> None:
    log = where / "audit.jsonl"
    with daemon(where, "--audit-log", str(log)) as (_proc, sock):
        r = Raw(sock)
        r.send(id="long", op="run", command="sleep 0.5; echo done", cwd=str(where))
        r.send_bytes(
            b'{"v":1,"id":2,"op":"run","command":"true","cwd":"/tmp","timeout":'
            + b"4" * 400
            + b"}\n"
        )
        r.send_bytes(b'{"v":1,"id":"\\ud800","op":"status"}\n')
        r.send_bytes(b'{"v":1,"id":3,"op":"check","command":"echo x","cwd":"/tmp\\udfff"}\n')
        replies: dict[Any, dict[str, Any]] = {}
        while "long" not in replies or len(replies) < 4:
            msg = r.recv()
            if msg.get("event") not in (None, "exit"):
                continue
            replies[msg.get("id")] = msg
        r.close()
    assert replies[2]["error"]["code"] == "bad_request"
    assert replies[None]["error"]["code"] == "bad_request"
    assert replies[3]["error"]["code"] == "bad_request"
    assert replies["long"]["code"] == 0  # the connection's other run was not touched
    log.read_bytes().decode("utf-8")  # the audit log holds valid UTF-8 only
    out = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "audit", "--audit-log", str(log), "--json"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert all(json.loads(line) for line in out.stdout.splitlines())


def test_a_timed_out_run_is_never_reported_as_a_success(where: Path) -> None:
    with daemon(where) as (_proc, sock):
        r = Raw(sock)
        # bash itself ends at once (status 0); what it left behind, in a session of its own,
        # holds the output pipe until the timeout ends the run
        leftover = (
            "python3 -c 'import os, sys, time; pid = os.fork(); "
            "(os.setsid(), time.sleep(30)) if pid == 0 else sys.exit(0)'"
        )
        r.send(id=1, op="run", command=leftover, cwd=str(where), timeout=0.5)
        final = r.until(1, "exit")[-1]
        r.close()
    assert final["timed_out"] is True
    assert final["code"] != 0


def _nobody_python() -> str | None:
    """A Python the unprivileged user can run, of this one's version (venv pythons under
    /root are not readable by others)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return shutil.which(f"python{version}", path="/usr/bin")


@needs_root
@pytest.mark.skipif(_nobody_python() is None, reason="needs a system Python of this version")
def test_an_unreadable_policy_directory_is_reported_as_such(where: Path) -> None:
    policies = make_policy_dir(where)
    os.chmod(policies, 0o000)
    os.chmod(where, 0o777)
    site = next(p for p in sys.path if p.endswith("site-packages"))
    repo = str(Path(__file__).resolve().parent.parent)

    def as_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    proc = subprocess.run(
        [str(_nobody_python()), "-m", "gatekeeper", "serve", "--socket",
         str(where / "n.sock"), "--policy-dir", str(policies), "--no-audit"],
        capture_output=True, timeout=30, check=False, preexec_fn=as_nobody,
        env={"PYTHONPATH": f"{repo}:{site}", "PATH": "/usr/bin:/bin", "HOME": str(where)},
    )  # fmt: skip
    os.chmod(policies, 0o700)
    assert proc.returncode == 1, proc.stderr
    assert b"cannot list the agent files: Permission denied" in proc.stderr, proc.stderr
