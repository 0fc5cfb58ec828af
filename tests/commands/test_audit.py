"""``gatekeeper audit``: the table, its filters, JSON, summary, suggest, verify, replay, follow.

Every log here is written by the real :class:`gatekeeper.audit.AuditLog` (through the
:class:`tests.test_audit_review.Recorder`); tampering is done to the bytes of the file, the way
someone covering their tracks would.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

import gatekeeper.audit
import gatekeeper.commands.audit as audit_cmd
from gatekeeper.audit import read_records
from gatekeeper.cli import main
from tests.test_audit_review import Recorder, write_policies

REPO = Path(__file__).resolve().parents[2]
HEADER = ("TIME", "AGENT", "DECISION", "RESULT", "COMMAND / PATH")

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("GATEKEEPER_AUDIT_LOG", raising=False)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    rec = Recorder.in_dir(tmp_path)
    yield rec
    rec.close()


@pytest.fixture
def log(recorder: Recorder) -> Path:
    """A morning's work by two agents."""
    now = datetime.now(UTC)
    recorder.run("ls -la", at=now - timedelta(hours=3))
    recorder.run("rm -rf build", at=now - timedelta(hours=2))
    recorder.run("kubectl get pods", agent="ops", at=now - timedelta(minutes=50))
    recorder.run("git push origin main", answer="once", at=now - timedelta(minutes=40))
    recorder.run("git push origin dev", answer="once", at=now - timedelta(minutes=30))
    recorder.run(
        "curl evil.sh", answer="reject", message="use the mirror", at=now - timedelta(minutes=20)
    )
    recorder.run("git push -u origin x", answer="once", exit_code=1, duration_ms=812.0)
    recorder.check("make deploy")
    return recorder.path


def audit(capsys: Capsys, *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table(capsys: Capsys, log: Path, *args: str) -> list[str]:
    code, out, err = audit(capsys, "--audit-log", str(log), *args)
    assert code == 0, err
    lines = out.splitlines()
    assert columns(lines[0]) == HEADER
    return lines[1:]


def columns(line: str) -> tuple[str, str, str, str, str]:
    """TIME, AGENT, DECISION, RESULT, COMMAND / PATH: fixed widths, one space apart."""
    return (
        line[:16].rstrip(),
        line[17:33].rstrip(),
        line[34:47].rstrip(),
        line[48:66].rstrip(),
        line[67:],
    )


def subjects(lines: list[str]) -> list[str]:
    return [columns(line)[4] for line in lines]


# --------------------------------------------------------------------------------------------
# The table


def test_table_rows_oldest_first_with_every_column(capsys: Capsys, log: Path) -> None:
    lines = table(capsys, log)
    assert subjects(lines) == [
        "ls -la",
        "rm -rf build",
        "kubectl get pods",
        "git push origin main",
        "git push origin dev",
        "curl evil.sh",
        "git push -u origin x",
        "make deploy",
    ]
    cols = {columns(line)[4]: columns(line)[1:4] for line in lines}
    assert cols == {
        "ls -la": ("dev", "allow", "exit 0 (12 ms)"),
        "rm -rf build": ("dev", "deny", "blocked"),
        "kubectl get pods": ("ops", "allow", "exit 0 (12 ms)"),
        "git push origin main": ("dev", "ask→once", "exit 0 (12 ms)"),
        "git push origin dev": ("dev", "ask→once", "exit 0 (12 ms)"),
        "curl evil.sh": ("dev", "ask→reject", "blocked"),
        "git push -u origin x": ("dev", "ask→once", "exit 1 (812 ms)"),
        "make deploy": ("dev", "ask", "check"),
    }
    # TIME: a clock time for today (local), the date too for older days.
    times = [columns(line)[0] for line in lines]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d", t) for t in times)
    assert re.fullmatch(r"\d\d:\d\d:\d\d", times[-1])  # written just now


def test_table_shows_the_date_for_older_days(capsys: Capsys, recorder: Recorder) -> None:
    recorder.run("ls -la", at=datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    (line,) = table(capsys, recorder.path)
    assert line.startswith("2024-0")  # 2024-03-01 or 2024-02-29 13:00 in the local zone


def test_table_shortens_long_commands_to_the_terminal(
    capsys: Capsys, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    recorder.run("ls " + "x" * 300)
    (line,) = table(capsys, recorder.path)
    assert line.endswith("…")
    assert len(line) == 100


def test_table_shows_control_characters_escaped(capsys: Capsys, recorder: Recorder) -> None:
    recorder.run("ls '\x1b[2Jhidden'", answer="once")
    (line,) = table(capsys, recorder.path)
    assert "\x1b" not in line
    assert "\\e[2Jhidden" in line


def test_no_colour_when_not_a_tty(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "--audit-log", str(log))
    assert code == 0
    assert "\x1b" not in out


def test_colour_on_a_tty_unless_no_color(
    capsys: Capsys, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, out, _ = audit(capsys, "--audit-log", str(log))
    assert "\x1b[32mallow" in out
    assert "\x1b[31mdeny" in out
    assert "\x1b[32mask→once" in out
    assert "\x1b[31mask→reject" in out
    assert "\x1b[33mask " in out
    monkeypatch.setenv("NO_COLOR", "1")
    _, out, _ = audit(capsys, "--audit-log", str(log))
    assert "\x1b" not in out


def test_audit_log_from_the_environment(
    capsys: Capsys, log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_AUDIT_LOG", str(log))
    code, out, _ = audit(capsys)
    assert code == 0
    assert "git push origin main" in out


# --------------------------------------------------------------------------------------------
# Filters


def test_filter_since_relative(capsys: Capsys, log: Path) -> None:
    assert subjects(table(capsys, log, "--since", "45m")) == [
        "git push origin main",
        "git push origin dev",
        "curl evil.sh",
        "git push -u origin x",
        "make deploy",
    ]


def test_filter_since_and_until_iso(capsys: Capsys, log: Path) -> None:
    now = datetime.now(UTC)
    since = (now - timedelta(hours=2, minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (now - timedelta(minutes=45)).isoformat()
    got = subjects(table(capsys, log, "--since", since, "--until", until))
    assert got == ["rm -rf build", "kubectl get pods"]
    assert subjects(table(capsys, log, "--until", "150m")) == ["ls -la"]


def test_filter_agent(capsys: Capsys, log: Path) -> None:
    assert subjects(table(capsys, log, "--agent", "ops")) == ["kubectl get pods"]


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ("deny", ["rm -rf build"]),
        ("once", ["git push origin main", "git push origin dev", "git push -u origin x"]),
        ("reject", ["curl evil.sh"]),
        ("allow", ["ls -la", "kubectl get pods"]),
    ],
)
def test_filter_decision(capsys: Capsys, log: Path, decision: str, expected: list[str]) -> None:
    assert subjects(table(capsys, log, "--decision", decision)) == expected


def test_filter_decision_must_be_known(capsys: Capsys, log: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit", "--audit-log", str(log), "--decision", "maybe"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_filter_grep(capsys: Capsys, log: Path) -> None:
    assert subjects(table(capsys, log, "--grep", "origin")) == [
        "git push origin main",
        "git push origin dev",
        "git push -u origin x",
    ]
    assert subjects(table(capsys, log, "--grep", "mirror")) == ["curl evil.sh"]


def test_filters_combine(capsys: Capsys, log: Path) -> None:
    got = subjects(table(capsys, log, "--since", "35m", "--decision", "once", "--grep", "push"))
    assert got == ["git push origin dev", "git push -u origin x"]


def test_bad_since_is_one_clear_error(capsys: Capsys, log: Path) -> None:
    code, out, err = audit(capsys, "--audit-log", str(log), "--since", "last tuesday")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "'last tuesday' is not a time" in err


# --------------------------------------------------------------------------------------------
# --json


def test_json_prints_each_matching_decision_with_its_outcomes(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "--audit-log", str(log), "--json", "--grep", "push -u")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    decision, approved, exited = records
    assert decision["kind"] == "decision"
    assert decision["command"] == "git push -u origin x"
    assert decision["decision"]["decision"] == "ask"
    assert [approved["ref"], exited["ref"]] == [decision["seq"], decision["seq"]]
    assert (approved["outcome"], approved["answer"]) == ("approved", "once")
    assert (exited["outcome"], exited["exit"]) == ("exit", 1)
    # Exactly the records of the log, hashes and all.
    on_disk = {rec["seq"]: rec for _, rec in read_records(log)}
    assert records == [on_disk[r["seq"]] for r in records]


def test_json_without_filters_is_every_request_record(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "--audit-log", str(log), "--json")
    assert code == 0
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == [rec["seq"] for _, rec in read_records(log)]


# --------------------------------------------------------------------------------------------
# summary and suggest


def test_summary(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "summary", "--audit-log", str(log))
    assert code == 0
    assert out.startswith("8 requests\n")
    assert "  ask            5\n" in out
    assert "  allow          2\n" in out
    assert "  deny           1\n" in out
    assert "human answers:\n  once           3\n  reject         1\n" in out
    assert "  dev                            7\n" in out
    assert "  ops                            1\n" in out
    assert "asked about most:\n" in out
    assert '      3  dev: bash "git push *": allow   e.g. git push origin main' in out
    assert "gatekeeper audit suggest" in out


def test_summary_json(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "summary", "--json", "--audit-log", str(log))
    assert code == 0
    body = json.loads(out)
    assert body["requests"] == 8
    assert body["by_decision"] == {"allow": 2, "deny": 1, "ask": 5}
    assert body["by_agent"] == {"dev": 7, "ops": 1}
    assert body["by_answer"] == {"once": 3, "reject": 1}
    assert {"subject": "curl evil.sh", "count": 1} in body["asked_most"]
    assert body["approved_again"] == [
        {
            "agent": "dev",
            "permission": "bash",
            "pattern": "git push *",
            "approvals": 3,
            "examples": ["git push origin main", "git push origin dev", "git push -u origin x"],
        }
    ]


def test_summary_takes_filters(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "summary", "--json", "--agent", "ops", "--audit-log", str(log))
    assert code == 0
    body = json.loads(out)
    assert body["requests"] == 1
    assert body["approved_again"] == []


def test_suggest(capsys: Capsys, log: Path, tmp_path: Path) -> None:
    code, out, _ = audit(capsys, "suggest", "--audit-log", str(log))
    assert code == 0
    assert '    "git push *": allow  # approved 3x, e.g. git push origin main\n' in out
    agent = tmp_path / "suggested.md"
    agent.write_text(f"---\n{out}---\n", encoding="utf-8")
    code, check_out, _ = audit_check(capsys, agent, "git push origin feature")
    assert code == 0, check_out


def audit_check(capsys: Capsys, agent: Path, command: str) -> tuple[int, str, str]:
    code = main(["check", "--policy", str(agent), command])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_suggest_min(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "suggest", "--min", "4", "--audit-log", str(log))
    assert code == 0
    assert out == "# nothing was approved often enough to suggest a rule\n"
    code, out, _ = audit(capsys, "suggest", "--min", "3", "--audit-log", str(log))
    assert '"git push *": allow' in out


# --------------------------------------------------------------------------------------------
# verify


def verify(capsys: Capsys, log: Path, *args: str) -> tuple[int, str]:
    code, out, err = audit(capsys, "verify", "--audit-log", str(log), *args)
    assert err == ""
    return code, out


def head_of(out: str) -> str:
    (line,) = [x for x in out.splitlines() if x.startswith("head ")]
    return line.split()[1]


def test_verify_ok_prints_the_head(capsys: Capsys, log: Path) -> None:
    code, out = verify(capsys, log)
    assert code == 0
    records = [rec for _, rec in read_records(log)]
    assert out.startswith(f"ok: {len(records)} records in 1 file(s), seq 1..{len(records)}\n")
    assert head_of(out) == records[-1]["hash"]


def test_verify_json(capsys: Capsys, log: Path) -> None:
    code, out = verify(capsys, log, "--json")
    assert code == 0
    body = json.loads(out)
    last = [rec for _, rec in read_records(log)][-1]
    assert body["ok"] is True
    assert (body["first_seq"], body["last_seq"], body["head"]) == (1, last["seq"], last["hash"])
    assert body["problems"] == []


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_verify_catches_one_edited_character(capsys: Capsys, log: Path) -> None:
    lines = lines_of(log)
    number = next(i for i, raw in enumerate(lines, 1) if b'"command":"rm -rf build"' in raw)
    lines[number - 1] = lines[number - 1].replace(b"rm -rf build", b"rm -rf bu1ld", 1)
    log.write_bytes(b"".join(lines))
    code, out = verify(capsys, log)
    assert code == 1
    assert f"FAILED: {log}:{number}: " in out
    assert "edited" in out
    code, out = verify(capsys, log, "--json")
    assert code == 1
    assert json.loads(out)["problems"][0].startswith(f"{log}:{number}:")


def test_verify_catches_a_removed_line(capsys: Capsys, log: Path) -> None:
    lines = lines_of(log)
    del lines[4]
    log.write_bytes(b"".join(lines))
    code, out = verify(capsys, log)
    assert code == 1
    assert f"FAILED: {log}:5: " in out  # the line after the gap


def test_verify_catches_two_swapped_lines(capsys: Capsys, log: Path) -> None:
    lines = lines_of(log)
    lines[3], lines[4] = lines[4], lines[3]
    log.write_bytes(b"".join(lines))
    code, out = verify(capsys, log)
    assert code == 1
    assert f"FAILED: {log}:4: " in out


def test_verify_anchor(capsys: Capsys, recorder: Recorder) -> None:
    for i in range(4):
        recorder.run(f"ls dir{i}")
    code, out = verify(capsys, recorder.path)
    anchor = head_of(out)
    # More records later: the anchor is still in the chain.
    recorder.run("ls later")
    assert verify(capsys, recorder.path, "--anchor", anchor)[0] == 0
    recorder.close()
    # Someone cuts the last records off the end: the chain alone still looks fine…
    lines = lines_of(recorder.path)
    recorder.path.write_bytes(b"".join(lines[:-4]))
    assert verify(capsys, recorder.path)[0] == 0
    # …but the head kept elsewhere is gone.
    code, out = verify(capsys, recorder.path, "--anchor", anchor)
    assert code == 1
    assert f"FAILED: the anchor {anchor} is not in the chain" in out


def test_verify_across_rotated_files(capsys: Capsys, tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "audit.jsonl", write_policies(tmp_path), max_bytes=2500)
    try:
        for i in range(12):
            rec.run(f"ls dir{i}")
    finally:
        rec.close()
    files = sorted(tmp_path.glob("audit.jsonl*"))
    assert len(files) >= 3
    code, out = verify(capsys, rec.path)
    assert code == 0, out
    assert f"ok: 24 records in {len(files)} file(s), seq 1..24\n" in out
    # An edit in a rotated file is found, and named by that file.
    rotated = tmp_path / "audit.jsonl.2"
    lines = lines_of(rotated)
    victim = next(i for i, line in enumerate(lines) if b'"exit":0' in line)
    lines[victim] = lines[victim].replace(b'"exit":0', b'"exit":1', 1)
    rotated.write_bytes(b"".join(lines))
    code, out = verify(capsys, rec.path)
    assert code == 1
    assert f"FAILED: {rotated}:{victim + 1}: " in out


def test_verify_notes_a_torn_last_line(capsys: Capsys, log: Path) -> None:
    whole = lines_of(log)[-1]
    with log.open("ab") as f:
        f.write(whole[: len(whole) // 2])
    code, out = verify(capsys, log)
    assert code == 0
    (note,) = [x for x in out.splitlines() if x.startswith("note: ")]
    assert f"{log}:{len(lines_of(log))}" in note
    assert "torn" in note


def test_verify_after_a_crash_and_recovery(
    capsys: Capsys, recorder: Recorder, log: Path, tmp_path: Path
) -> None:
    recorder.close()  # the daemon is killed mid-write
    whole = lines_of(log)[-1]
    with log.open("ab") as f:
        f.write(whole[:50])
    rec = Recorder(log, write_policies(tmp_path))  # the daemon restarts on the torn log
    rec.run("ls after-crash")
    rec.close()
    code, out = verify(capsys, log)
    assert code == 0, out
    assert "removed 50 bytes that were not a whole record" in out


# --------------------------------------------------------------------------------------------
# replay


def test_replay(capsys: Capsys, log: Path, tmp_path: Path) -> None:
    stricter = tmp_path / "stricter.md"
    stricter.write_text(
        '---\npermission:\n  bash:\n    "*": ask\n    "ls *": allow\n    "git push *": deny\n'
        '    "rm -rf *": deny\n---\n',
        encoding="utf-8",
    )
    code, out, _ = audit(capsys, "replay", "--policy", str(stricter), "--audit-log", str(log))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"8 recorded requests re-decided under {stricter}: 4 would change"
    changed = [line.split() for line in lines[1::2]]
    assert changed == [
        ["allow", "→", "ask", "kubectl", "get", "pods"],
        ["ask", "→", "deny", "git", "push", "origin", "main"],
        ["ask", "→", "deny", "git", "push", "origin", "dev"],
        ["ask", "→", "deny", "git", "push", "-u", "origin", "x"],
    ]
    assert 'rule "git push *" → deny' in lines[4]

    code, out, _ = audit(
        capsys, "replay", "--json", "--agent", "ops", "--policy", str(stricter),
        "--audit-log", str(log),
    )  # fmt: skip
    assert code == 0
    (only,) = [json.loads(line) for line in out.splitlines()]
    assert (only["subject"], only["before"], only["after"]) == ("kubectl get pods", "allow", "ask")
    assert isinstance(only["seq"], int)


def test_replay_with_a_broken_policy_file(capsys: Capsys, log: Path, tmp_path: Path) -> None:
    code, out, err = audit(
        capsys, "replay", "--policy", str(tmp_path / "nope.md"), "--audit-log", str(log)
    )
    assert code == 1
    assert out == ""
    assert "nope.md: cannot read" in err


# --------------------------------------------------------------------------------------------
# A missing log


@pytest.mark.parametrize(
    "args",
    [[], ["--json"], ["summary"], ["suggest"], ["verify"], ["replay", "--policy", "x.md"]],
)
def test_missing_log_is_one_clear_line(capsys: Capsys, tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nowhere" / "audit.jsonl"
    sub, rest = (args[:1], args[1:]) if args and not args[0].startswith("-") else ([], args)
    code, out, err = audit(capsys, *sub, "--audit-log", str(missing), *rest)
    assert code == 1
    assert out == ""
    assert err == (
        f"gatekeeper: {missing}: no audit log there (start the daemon, or give --audit-log PATH)\n"
    )


def test_audit_log_before_the_subcommand(capsys: Capsys, log: Path) -> None:
    code, out, _ = audit(capsys, "--audit-log", str(log), "summary")
    assert code == 0
    assert out.startswith("8 requests")


# --------------------------------------------------------------------------------------------
# --follow


def test_tail_reads_what_was_written_just_before_a_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records the daemon appends to the old file between the tail's last read and its check for
    a rotation are still shown, before the new file's."""
    rec = Recorder(tmp_path / "audit.jsonl", write_policies(tmp_path), max_bytes=1500)
    try:
        rec.run("ls first")
        f = rec.path.open("rb")
        f.seek(0, os.SEEK_END)
        tail = audit_cmd._tail(rec.path, f)
        real_stat = os.stat
        armed = [True]

        def stat_with_writes_in_between(path: Any, *a: Any, **kw: Any) -> os.stat_result:
            if armed[0] and Path(path) == rec.path:
                armed[0] = False
                rec.check("ls into-the-old-file")  # fits: the old file
                rec.check("ls into-the-new-file")  # rotates first
                assert (tmp_path / "audit.jsonl.1").exists()
            return real_stat(path, *a, **kw)

        monkeypatch.setattr(os, "stat", stat_with_writes_in_between)
        # _tail opens the file at its end: nothing yet, so it reads, then checks for a rotation.
        got = [next(tail)["command"], next(tail)["command"]]
        assert not armed[0]
        assert got == ["ls into-the-old-file", "ls into-the-new-file"]
        tail.close()
    finally:
        monkeypatch.undo()
        rec.close()


def follow_in_process(
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    rec: Recorder,
    args: list[str],
    before: Callable[[], object],
    after: Callable[[], object],
    records: int,
) -> list[str]:
    """``audit --follow`` in this process: ``before`` writes once the live file is open but
    before the log is read, ``after`` once it was read; the tail stops after ``records``."""
    real_read, real_tail = gatekeeper.audit.read_records, audit_cmd._tail

    def read_records(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
        before()
        yield from real_read(path)
        after()

    def tail(path: Path, f: IO[bytes]) -> Iterator[dict[str, Any]]:
        gen = real_tail(path, f)  # type: ignore[arg-type]
        try:
            for _ in range(records):
                yield next(gen)
        finally:
            gen.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_cmd, "read_records", read_records)
    monkeypatch.setattr(audit_cmd, "_tail", tail)
    code, out, err = audit(capsys, "--follow", "--audit-log", str(rec.path), *args)
    assert (code, err) == (0, "")
    return out.splitlines()


def test_follow_misses_nothing_written_while_the_log_is_read(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    recorder.run("ls one")
    lines = follow_in_process(
        capsys, monkeypatch, recorder, [],
        before=lambda: recorder.run("ls two"),
        after=lambda: recorder.run("ls three", exit_code=4),
        records=4,
    )  # fmt: skip
    assert [columns(line)[1:] for line in lines[1:4]] == [
        ("dev", "allow", "exit 0 (12 ms)", "ls one"),
        ("dev", "allow", "exit 0 (12 ms)", "ls two"),  # in the table, not again from the tail
        ("dev", "allow", "", "ls three"),
    ]
    assert lines[4].split() == ["↳", "allow", "exit", "4", "(12", "ms)"]


def test_follow_shows_outcomes_of_runs_begun_before_and_filters_by_answer(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    ref, _, rid = recorder.decide("make deploy")  # waiting for a human when following starts

    def later() -> None:
        recorder.outcome(ref, rid, "make deploy", outcome="approved", answer="once")
        recorder.outcome(ref, rid, "make deploy", outcome="exit", exit=0, duration_ms=5.0)
        recorder.run("make test", answer="once")
        recorder.run("make clean", answer="reject")

    lines = follow_in_process(
        capsys, monkeypatch, recorder, ["--decision", "once"],
        before=lambda: None, after=later, records=7,
    )  # fmt: skip
    # Neither request was an "ask→once" when it was decided: each shows up with its request
    # when the answer comes, then its exit below it.
    assert [line.split() for line in lines[1:]] == [
        [lines[1].split()[0], "dev", "ask→once", "make", "deploy"],
        ["↳", "ask→once", "exit", "0", "(5", "ms)"],
        [lines[3].split()[0], "dev", "ask→once", "make", "test"],
        ["↳", "ask→once", "exit", "0", "(12", "ms)"],
    ]
    assert "make clean" not in "\n".join(lines)


class Reader:
    """Lines of a child's stdout, read by a thread so that waiting can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if text in line:
                return line
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} did not show up; the output was: {self.seen!r}")


def test_follow_shows_new_records_also_after_rotation(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "audit.jsonl", write_policies(tmp_path), max_bytes=3000)
    proc: subprocess.Popen[str] | None = None
    try:
        rec.run("ls before-follow")
        env = {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper", "audit", "--follow", "--audit-log", str(rec.path)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        out = Reader(proc.stdout)
        out.wait_for("ls before-follow", timeout=10)
        # The tail starts at the end of the file just after the table: write probes until one
        # shows up, so the records that matter are written once it surely follows.
        deadline = time.monotonic() + 10
        probe = 0
        while True:
            probe += 1
            rec.check(f"ls probe{probe}")
            try:
                out.wait_for(f"ls probe{probe}", timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "--follow never showed a new record"
        rec.run("make deploy", answer="once", exit_code=2, duration_ms=40.0)
        line = out.wait_for("make deploy")
        assert line.split()[2:4] == ["ask", "make"]  # no result yet when the decision comes
        follow_up = out.wait_for("↳")
        assert follow_up.split()[1:] == ["ask→once"]
        assert out.wait_for("exit 2 (40 ms)").split()[1:] == ["ask→once", "exit", "2", "(40", "ms)"]
        first_rotation = tmp_path / "audit.jsonl.1"
        for i in range(8):
            rec.run(f"ls after-rotation-{i}")
        assert first_rotation.exists()
        for i in range(8):
            out.wait_for(f"ls after-rotation-{i}")
        assert "\x1b" not in "".join(out.seen)
        assert proc.poll() is None
    finally:
        rec.close()
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_follow_json_prints_records_as_they_come(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "audit.jsonl", write_policies(tmp_path))
    proc: subprocess.Popen[str] | None = None
    try:
        rec.run("ls before-follow")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gatekeeper", "audit", "--follow", "--json",
                "--agent", "ops", "--audit-log", str(rec.path),
            ],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        out = Reader(proc.stdout)
        deadline = time.monotonic() + 10
        probe = 0
        while True:
            probe += 1
            rec.check(f"kubectl get probe{probe}", agent="ops")
            try:
                out.wait_for(f"probe{probe}", timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "--follow never showed a new record"
        rec.run("ls not-ops")  # filtered out, outcomes too
        seq = rec.run("kubectl apply -f x.yaml", agent="ops", answer="once")
        out.wait_for('"outcome": "exit"')
        shown = [json.loads(line) for line in out.seen]
        tail = [r for r in shown if r["seq"] >= seq]
        assert [(r["kind"], r.get("outcome")) for r in tail] == [
            ("decision", None),
            ("outcome", "approved"),
            ("outcome", "exit"),
        ]
        assert all(r.get("command") != "ls not-ops" for r in shown)
        assert all(r["agent"] == "ops" for r in shown)
    finally:
        rec.close()
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
