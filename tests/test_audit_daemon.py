"""The audit log as the real daemon writes it: under load, across a SIGKILL, for runs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.audit import read_lines, read_records, verify
from tests.daemon_util import Raw, make_policy_dir, short_dir, subprocess_daemon


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def hammer(sock: Path, clients: int, per_client: int, unique: bool = False) -> list[str]:
    """Each client sends its checks one at a time; returns the errors seen."""
    errors: list[str] = []

    def client(c: int) -> None:
        try:
            r = Raw(sock)
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        try:
            for i in range(per_client):
                command = f"echo {c} {i}" if unique else "echo hi && cat notes.txt"
                r.send(id=i, op="check", command=command, cwd="/tmp")
                reply = r.recv()
                if reply.get("id") != i or "decision" not in reply:
                    errors.append(str(reply))
        except (OSError, EOFError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            r.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_fifty_clients_two_hundred_checks_each(where: Path) -> None:
    sock, log = where / "s.sock", where / "audit.jsonl"
    with subprocess_daemon(sock, make_policy_dir(where), "--audit-log", str(log)):
        assert hammer(sock, 50, 200) == []
    records = [rec for _, rec in read_records(log)]
    decisions = [r for r in records if r["kind"] == "decision"]
    assert len(decisions) == 10_000
    # and the daemon's own start and (clean) stop, nothing else
    assert [r["kind"] for r in records if r["kind"] != "decision"] == ["start", "stop"]
    assert records[0]["previous"] == "new"
    assert {r["decision"]["decision"] for r in decisions} == {"allow"}
    assert {r["command"] for r in decisions} == {"echo hi && cat notes.txt"}
    per_id = Counter(r["id"] for r in decisions)
    assert per_id == dict.fromkeys(range(200), 50)  # every client's every request, once
    v = verify(read_lines(log))
    assert (v.ok, v.records, v.first_seq, v.last_seq) == (True, 10_002, 1, 10_002)


def test_sigkill_under_load_leaves_a_readable_log_and_the_chain_goes_on(where: Path) -> None:
    sock, log = where / "s.sock", where / "audit.jsonl"
    policies = make_policy_dir(where)
    with subprocess_daemon(sock, policies, "--audit-log", str(log)) as proc:
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                hammer(sock, 4, 50, unique=True)

        loaders = [threading.Thread(target=load) for _ in range(2)]
        for t in loaders:
            t.start()
        deadline = time.monotonic() + 10
        while (not log.exists() or log.stat().st_size < 200_000) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()  # SIGKILL in the middle of heavy writing
        proc.wait(10)
        stop.set()
        for t in loaders:
            t.join(60)
    before = verify(read_lines(log))
    assert before.ok, before.problems  # readable; a torn last line would only be a note
    assert before.records > 200
    with subprocess_daemon(sock, policies, "--audit-log", str(log)):
        assert hammer(sock, 2, 50) == []
    after = verify(read_lines(log))
    assert after.ok, after.problems
    assert after.first_seq == 1
    recovered = 1 if any("torn" in n for n in before.notes) else 0
    # +100 checks, +1 start (which notes the crash), +1 stop, and a recovery if a line was torn
    assert after.last_seq == (before.last_seq or 0) + 100 + 2 + recovered
    assert any("the daemon before this one crashed" in n for n in after.notes)


def test_runs_record_decision_and_outcome(where: Path) -> None:
    sock, log = where / "s.sock", where / "audit.jsonl"
    with subprocess_daemon(
        sock, make_policy_dir(where), "--audit-log", str(log), "--approval-timeout", "0.3"
    ):
        r = Raw(sock)
        r.send(id="a", op="run", command="printf 12345; printf xy >&2", cwd=str(where))
        r.until("a", "exit")
        r.send(id="b", op="run", command="rm -rf x", cwd=str(where))
        r.until("b", "blocked")
        r.send(id="c", op="run", command="touch y", cwd=str(where))
        r.until("c", "blocked")
        r.close()
    records = [rec for _, rec in read_records(log) if "id" in rec]
    by_id: dict[str, list[dict[str, object]]] = {}
    for rec in records:
        by_id.setdefault(str(rec["id"]), []).append(rec)
    a_decision, a_exit = by_id["a"]
    assert a_decision["kind"] == "decision"
    assert a_decision["decided_by"] == "policy"
    assert a_exit["ref"] == a_decision["seq"]
    assert (a_exit["outcome"], a_exit["exit"]) == ("exit", 0)
    assert (a_exit["stdout_bytes"], a_exit["stderr_bytes"]) == (5, 2)
    assert isinstance(a_exit["duration_ms"], float)
    b_decision, b_out = by_id["b"]
    assert json.dumps(b_decision["decision"]).count('"deny"') >= 1
    assert (b_out["outcome"], b_out["decided_by"]) == ("blocked", "policy")
    _c_decision, c_out = by_id["c"]
    assert (c_out["outcome"], c_out["decided_by"]) == ("blocked", "timeout")
    client = a_decision["client"]
    assert isinstance(client, dict)
    assert set(client) == {"pid", "uid", "name"}
    assert verify(read_lines(log)).ok


def test_two_daemons_cannot_share_one_log(where: Path) -> None:
    log = where / "audit.jsonl"
    policies = make_policy_dir(where)
    with subprocess_daemon(where / "a.sock", policies, "--audit-log", str(log)):
        import sys

        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "gatekeeper",
                "serve",
                "--socket",
                str(where / "b.sock"),
                "--policy-dir",
                str(policies),
                "--default-agent",
                "tester",
                "--audit-log",
                str(log),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert second.returncode == 1
    assert b"in use by another gatekeeper daemon" in second.stderr
