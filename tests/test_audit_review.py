"""Reviewing the audit log: times, rows, filters, summaries, suggested rules, replays.

The logs are written with the real :class:`gatekeeper.audit.AuditLog`, in the shapes the daemon
writes (decision records with the engine's decision, outcome records pointing at them by
``ref``); :class:`Recorder` is shared with ``tests/commands/test_audit.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from gatekeeper.audit import DEFAULT_MAX_BYTES, AuditLog, read_records
from gatekeeper.audit_review import (
    Filter,
    Row,
    Suggestion,
    parse_when,
    replay,
    rows,
    suggestion_snippet,
    summarise,
)
from gatekeeper.engine import Decision, decide_command, decide_path
from gatekeeper.errors import GatekeeperError
from gatekeeper.policy import Policy, load_policy_file, parse_policy
from gatekeeper.protocol import encode

HOME = "/home/dev"
PROJECT = "/home/dev/project"

DEV_POLICY = """---
permission:
  bash:
    "*": ask
    "ls *": allow
    "git status": allow
    "npm test": allow
    "rm -rf *": deny
  edit:
    "*": ask
    "src/*": allow
---

The agent the tests mostly use.
"""

OPS_POLICY = """---
permission:
  bash:
    "*": ask
    "kubectl get *": allow
---
"""


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Recorder:
    """Writes requests into a real audit log the way ``gatekeeper.server`` does."""

    def __init__(
        self,
        path: Path,
        policies: dict[str, Policy],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = path
        self.policies = policies
        self.log = AuditLog(path, fsync="never", max_bytes=max_bytes)
        self._ids = itertools.count(1)

    @classmethod
    def in_dir(cls, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Recorder:
        """A recorder with the ``dev`` and ``ops`` agents written as files in ``directory``."""
        return cls(directory / "audit.jsonl", write_policies(directory), max_bytes=max_bytes)

    def close(self) -> None:
        self.log.close()

    def _write(
        self,
        record: dict[str, Any],
        rid: str,
        at: datetime | None,
        decision_json: bytes | None = None,
    ) -> int:
        record = {**record, "id": rid, "client": {"pid": 4242, "uid": 1000, "name": "opencode"}}
        if at is None:
            return self.log.write(record, decision_json)
        with mock.patch("gatekeeper.audit.utc_now", return_value=stamp(at)):
            return self.log.write(record, decision_json)

    def decide(
        self,
        command: str,
        *,
        agent: str = "dev",
        op: str = "run",
        at: datetime | None = None,
    ) -> tuple[int, Decision, str]:
        """The decision record of a run or check of ``command``: (its seq, decision, id)."""
        policy = self.policies[agent]
        decision = decide_command(policy, command, PROJECT, HOME)
        rid = f"r{next(self._ids)}"
        record = {
            "kind": "decision",
            "op": op,
            "agent": policy.name,
            "cwd": PROJECT,
            "command": command,
            "decided_by": "policy",
        }
        ref = self._write(record, rid, at, encode(decision.to_json())[:-1])
        return ref, decision, rid

    def outcome(
        self,
        ref: int,
        rid: str,
        command: str,
        *,
        agent: str = "dev",
        at: datetime | None = None,
        **fields: Any,
    ) -> int:
        record = {
            "kind": "outcome",
            "op": "run",
            "ref": ref,
            "agent": agent,
            "cwd": PROJECT,
            "command": command,
            **fields,
        }
        return self._write(record, rid, at)

    def run(
        self,
        command: str,
        *,
        agent: str = "dev",
        answer: str | None = None,
        pattern: str | None = None,
        message: str | None = None,
        exit_code: int = 0,
        duration_ms: float = 12.25,
        timed_out: bool = False,
        at: datetime | None = None,
    ) -> int:
        """A whole run: its decision, the human's answer if asked, the exit. Its seq."""
        ref, decision, rid = self.decide(command, agent=agent, at=at)

        def out(**fields: Any) -> None:
            self.outcome(ref, rid, command, agent=agent, at=at, **fields)

        if decision.decision == "deny":
            assert answer is None, f"{command!r} is denied by the policy"
            out(outcome="blocked", decided_by="policy")
            return ref
        if decision.decision == "ask":
            assert answer is not None, f"{command!r} asks: give an answer"
            approved = answer in ("once", "always")
            if answer == "always" and pattern is None:
                pattern = "*"
            out(
                outcome="approved" if approved else "blocked",
                decided_by="human" if answer in ("once", "always", "reject") else answer,
                answer=answer,
                pattern=pattern,
                message=message,
            )
            if not approved:
                return ref
        else:
            assert answer is None, f"{command!r} is allowed: nobody is asked"
        out(
            outcome="exit",
            exit=-9 if timed_out else exit_code,
            duration_ms=duration_ms,
            stdout_bytes=120,
            stderr_bytes=0,
            timed_out=timed_out,
            killed=None,
        )
        return ref

    def check(self, command: str, *, agent: str = "dev", at: datetime | None = None) -> int:
        return self.decide(command, agent=agent, op="check", at=at)[0]

    def check_path(
        self, path: str, permission: str = "edit", *, agent: str = "dev", at: datetime | None = None
    ) -> int:
        policy = self.policies[agent]
        decision = decide_path(policy, permission, path, PROJECT, HOME)
        record = {
            "kind": "decision",
            "op": "check",
            "agent": policy.name,
            "cwd": PROJECT,
            "decided_by": "policy",
            "path": path,
            "permission": permission,
        }
        rid = f"r{next(self._ids)}"
        return self._write(record, rid, at, encode(decision.to_json())[:-1])


def write_policies(directory: Path) -> dict[str, Policy]:
    (directory / "dev.md").write_text(DEV_POLICY, encoding="utf-8")
    (directory / "ops.md").write_text(OPS_POLICY, encoding="utf-8")
    return {name: load_policy_file(directory / f"{name}.md") for name in ("dev", "ops")}


def all_rows(path: Path) -> list[Row]:
    return rows(rec for _, rec in read_records(path))


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    rec = Recorder.in_dir(tmp_path)
    yield rec
    rec.close()


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# parse_when


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("45s", NOW - timedelta(seconds=45)),
        (" 3h ", NOW - timedelta(hours=3)),
    ],
)
def test_parse_when_relative(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
        ("2026-11-27T10:15:00", datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
        ("2026-11-27T10:15:00Z", datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
        ("2026-11-27 10:15", datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
        ("2026-11-27T12:15:00+02:00", datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
    ],
)
def test_parse_when_iso(text: str, expected: datetime) -> None:
    when = parse_when(text, NOW)
    assert when == expected
    assert when.tzinfo is not None  # comparable with the records' times


def test_parse_when_defaults_to_now() -> None:
    before = datetime.now(UTC)
    when = parse_when("1h")
    assert before - timedelta(hours=1, seconds=5) <= when <= datetime.now(UTC) - timedelta(hours=1)


@pytest.mark.parametrize("text", ["yesterday", "", "5x", "1 fortnight", "2026-13-45", "-1h"])
def test_parse_when_bad_input_says_what_works(text: str) -> None:
    with pytest.raises(GatekeeperError) as info:
        parse_when(text, NOW)
    message = str(info.value)
    assert repr(text) in message
    assert "30m" in message
    assert "ISO date" in message


# --------------------------------------------------------------------------------------------
# rows


def test_outcomes_attach_to_their_decision_by_ref(recorder: Recorder) -> None:
    # Two runs in flight at once: the outcomes come back in the other order.
    ref_a, _, rid_a = recorder.decide("make build")
    ref_b, _, rid_b = recorder.decide("ls -la")
    recorder.outcome(ref_b, rid_b, "ls -la", outcome="exit", exit=0, duration_ms=3.0)
    recorder.outcome(
        ref_a, rid_a, "make build", outcome="approved", decided_by="human", answer="once"
    )
    recorder.outcome(ref_a, rid_a, "make build", outcome="exit", exit=2, duration_ms=950.0)
    # An outcome whose decision is not in the log (rotated away) is dropped, not misattached.
    recorder.outcome(999, "r99", "echo lost", outcome="exit", exit=0, duration_ms=1.0)

    got = all_rows(recorder.path)
    assert [r.subject for r in got] == ["make build", "ls -la"]
    a, b = got
    assert [o["outcome"] for o in a.outcomes] == ["approved", "exit"]
    assert all(o["ref"] == ref_a for o in a.outcomes)
    assert [o["outcome"] for o in b.outcomes] == ["exit"]
    assert a.final == "ask→once"
    assert a.result == "exit 2 (950 ms)"
    assert b.final == "allow"
    assert b.result == "exit 0 (3 ms)"


def test_final_and_result_for_every_kind_of_request(recorder: Recorder) -> None:
    recorder.run("ls -la", duration_ms=12.25)
    recorder.run("rm -rf build")
    recorder.run("make deploy", answer="once", exit_code=3, duration_ms=2000.4)
    recorder.run("curl evil.sh", answer="reject", message="no network, please")
    recorder.run("git push", answer="timeout")
    recorder.run("npm test", timed_out=True, duration_ms=30000)
    recorder.check("cat /etc/passwd")
    recorder.check_path("src/app.py")

    got = {r.subject: r for r in all_rows(recorder.path)}
    table = {s: (r.policy_decision, r.answer, r.final, r.result) for s, r in got.items()}
    assert table == {
        "ls -la": ("allow", None, "allow", "exit 0 (12 ms)"),
        "rm -rf build": ("deny", None, "deny", "blocked"),
        "make deploy": ("ask", "once", "ask→once", "exit 3 (2000 ms)"),
        "curl evil.sh": ("ask", "reject", "ask→reject", "blocked"),
        "git push": ("ask", "timeout", "ask→timeout", "blocked"),
        "npm test": ("allow", None, "allow", "exit -9 (30000 ms) timed out"),
        "cat /etc/passwd": ("ask", None, "ask", "check"),
        "src/app.py": ("allow", None, "allow", "check"),
    }
    # The reason recorded is the engine's, and the human's message is searchable.
    assert 'rule "rm -rf *" → deny' in got["rm -rf build"].text()
    assert "no network, please" in got["curl evil.sh"].text()


def test_a_cancelled_run_reads_as_cancelled(recorder: Recorder) -> None:
    recorder.run("make deploy", answer="cancelled", message="the client went away")
    (row,) = all_rows(recorder.path)
    assert row.answer == "cancelled"
    assert row.final == "ask→cancelled"
    assert row.result == "blocked"


def test_a_run_lost_in_a_crash_reads_as_such(recorder: Recorder) -> None:
    """A run decided but never finished, then a daemon that crashed: the next daemon's start
    record names it, and the table says so instead of leaving the result blank."""
    recorder.decide("make deploy")  # decided; the daemon dies before the outcome
    recorder.run("ls -la")
    recorder.log.close()  # no stop record: as after a SIGKILL
    recorder.log = AuditLog(recorder.path, fsync="never")
    recorder.log.begin(pid=1, version="test")
    lost, finished = all_rows(recorder.path)
    assert lost.result == "no outcome (daemon crashed)"
    assert finished.result.startswith("exit 0")


# --------------------------------------------------------------------------------------------
# Filter


@pytest.fixture
def history(recorder: Recorder) -> list[Row]:
    """A day of requests at known times, by two agents."""
    recorder.run("ls -la", at=NOW - timedelta(hours=20))
    recorder.run("rm -rf build", at=NOW - timedelta(hours=10))
    recorder.run("kubectl get pods", agent="ops", at=NOW - timedelta(hours=5))
    recorder.run("make deploy", answer="once", at=NOW - timedelta(hours=2))
    recorder.run(
        "curl evil.sh", answer="reject", message="use the mirror", at=NOW - timedelta(hours=1)
    )
    recorder.run(
        "kubectl delete pod x", agent="ops", answer="always", at=NOW - timedelta(minutes=5)
    )
    return all_rows(recorder.path)


def kept(history: list[Row], flt: Filter) -> list[str]:
    return [r.subject for r in history if flt.keeps(r)]


def test_filter_nothing_keeps_everything(history: list[Row]) -> None:
    assert len(kept(history, Filter())) == 6


def test_filter_since_and_until(history: list[Row]) -> None:
    assert kept(history, Filter(since=parse_when("90m", NOW))) == [
        "curl evil.sh",
        "kubectl delete pod x",
    ]
    assert kept(history, Filter(until=parse_when("6h", NOW))) == ["ls -la", "rm -rf build"]
    window = Filter(since=NOW - timedelta(hours=11), until=NOW - timedelta(hours=4))
    assert kept(history, window) == ["rm -rf build", "kubectl get pods"]
    # Bounds are inclusive.
    exact = Filter(since=NOW - timedelta(hours=5), until=NOW - timedelta(hours=5))
    assert kept(history, exact) == ["kubectl get pods"]


def test_filter_agent(history: list[Row]) -> None:
    assert kept(history, Filter(agent="ops")) == ["kubectl get pods", "kubectl delete pod x"]
    assert kept(history, Filter(agent="nobody")) == []


@pytest.mark.parametrize(
    ("decision", "subjects"),
    [
        ("allow", ["ls -la", "kubectl get pods"]),
        ("deny", ["rm -rf build"]),  # the policy's deny; a human's reject is not a policy deny
        ("ask", ["make deploy", "curl evil.sh", "kubectl delete pod x"]),
        ("once", ["make deploy"]),
        ("always", ["kubectl delete pod x"]),
        ("reject", ["curl evil.sh"]),
        ("timeout", []),
    ],
)
def test_filter_decision_is_the_policys_or_the_humans(
    history: list[Row], decision: str, subjects: list[str]
) -> None:
    assert kept(history, Filter(decision=decision)) == subjects


def test_filter_grep_searches_command_reason_and_message(history: list[Row]) -> None:
    assert kept(history, Filter(grep="kubectl")) == ["kubectl get pods", "kubectl delete pod x"]
    assert kept(history, Filter(grep='"rm -rf *" → deny')) == ["rm -rf build"]  # the reason
    assert kept(history, Filter(grep="the mirror")) == ["curl evil.sh"]  # the human's message
    assert kept(history, Filter(grep="no such text")) == []


def test_filters_combine(history: list[Row]) -> None:
    flt = Filter(agent="ops", decision="ask", since=NOW - timedelta(hours=1))
    assert kept(history, flt) == ["kubectl delete pod x"]


# --------------------------------------------------------------------------------------------
# summarise and suggestion_snippet


@pytest.fixture
def approvals(recorder: Recorder) -> list[Row]:
    recorder.run("ls -la")
    recorder.run("ls src")
    recorder.run("rm -rf build")
    recorder.run("git push origin main", answer="once")
    recorder.run("git push origin dev", answer="always", pattern="git push origin dev")
    recorder.run("git push -u origin x", answer="once")
    recorder.run("git push --force", answer="reject")  # rejected: no suggestion from it
    recorder.run("make deploy", answer="once")  # approved once only
    recorder.run("make deploy", answer="timeout")
    recorder.run("kubectl delete pod a", agent="ops", answer="once")
    recorder.run("kubectl delete pod b", agent="ops", answer="once")
    recorder.check("make deploy")
    return all_rows(recorder.path)


def test_summary_counts(approvals: list[Row]) -> None:
    s = summarise(approvals)
    assert s.total == 12
    assert dict(s.by_decision) == {"allow": 2, "deny": 1, "ask": 9}
    assert dict(s.by_agent) == {"dev": 10, "ops": 2}
    assert dict(s.by_answer) == {"once": 5, "always": 1, "reject": 1, "timeout": 1}
    # make deploy was asked three times (two runs and a check): most of all.
    assert s.asked[0] == ("make deploy", 3)
    assert ("git push origin main", 1) in s.asked
    assert all(subject != "ls -la" for subject, _ in s.asked)
    assert len(summarise(approvals, top=2).asked) == 2


def test_approved_again_and_again_grouped_by_suggested_pattern(approvals: list[Row]) -> None:
    s = summarise(approvals)
    assert [(x.agent, x.permission, x.pattern, x.approvals) for x in s.approved_again] == [
        ("dev", "bash", "git push *", 3),
        ("ops", "bash", "kubectl delete *", 2),
    ]
    push = s.approved_again[0]
    assert push.examples == ["git push origin main", "git push origin dev", "git push -u origin x"]
    assert push.last == approvals[5].decision["time"]


def test_min_approvals_threshold(approvals: list[Row]) -> None:
    assert [x.pattern for x in summarise(approvals, min_approvals=3).approved_again] == [
        "git push *"
    ]
    assert summarise(approvals, min_approvals=4).approved_again == []
    once = {x.pattern for x in summarise(approvals, min_approvals=1).approved_again}
    assert once == {"git push *", "kubectl delete *", "make deploy *"}


def test_suggestion_snippet_is_frontmatter_the_policy_parser_accepts(
    approvals: list[Row],
) -> None:
    s = summarise([r for r in approvals if r.decision["agent"] == "dev"])
    snippet = suggestion_snippet(s.approved_again)
    assert '"git push *": allow' in snippet
    assert "approved 3x" in snippet
    policy = parse_policy(f"---\n{snippet}---\n", "suggested.md")
    assert not policy.warnings
    for command in ("git push origin main", "git push origin dev", "git push -u origin x"):
        assert decide_command(policy, command, PROJECT, HOME).decision == "allow", command
    # Only what was approved: anything else still has no rule.
    assert decide_command(policy, "git reset --hard", PROJECT, HOME).decision == "ask"


def test_suggestion_snippet_one_block_per_agent(approvals: list[Row]) -> None:
    snippet = suggestion_snippet(summarise(approvals).approved_again)
    dev, ops = snippet.split("# agent ")[1:]
    assert dev.startswith("dev:")
    assert ops.startswith("ops:")
    for block in (dev, ops):
        body = block.split("\n", 1)[1]
        assert parse_policy(f"---\n{body}---\n", "x.md").rulesets["bash"].rules


def test_suggestion_snippet_with_nothing_to_suggest() -> None:
    snippet = suggestion_snippet([])
    assert snippet.startswith("#")
    assert "nothing" in snippet
    assert parse_policy(f"---\n{snippet}---\n", "x.md").rulesets == {}


@pytest.mark.parametrize(
    "pattern",
    [
        './say"hi" *',
        "C:\\tools\\run *",
        "printf\x1b[31m *",
        "odd\u2028name *",
        "zero\u200bwidth *",
        "caf\u00e9 \U0001f600 *",
    ],
)
def test_suggestion_snippet_quotes_any_pattern_exactly(pattern: str) -> None:
    example = pattern.replace("*", "x\ny\r\x07")
    snippet = suggestion_snippet([Suggestion("dev", "bash", pattern, 2, [example], "")])
    # Nothing a terminal would act on is printed.
    assert not any(ch in snippet for ch in "\x1b\x07\r\u2028")
    policy = parse_policy(f"---\n{snippet}---\n", "x.md")
    (rule,) = policy.rulesets["bash"].rules
    assert rule.pattern == pattern
    assert rule.action == "allow"


# --------------------------------------------------------------------------------------------
# replay


def test_replay_under_a_stricter_policy(recorder: Recorder, tmp_path: Path) -> None:
    recorder.run("ls -la")
    recorder.run("git push origin main", answer="once")
    recorder.run("rm -rf build")
    recorder.run("git status")
    recorder.check_path("src/app.py")
    recorder.check_path("docs/readme.md")
    strict = tmp_path / "strict.md"
    strict.write_text(
        '---\npermission:\n  bash:\n    "*": ask\n    "ls *": allow\n    "git push *": deny\n'
        '    "rm -rf *": deny\n  edit:\n    "*": deny\n---\n',
        encoding="utf-8",
    )
    changes = replay(all_rows(recorder.path), load_policy_file(strict), HOME)
    assert [(c.row.subject, c.before, c.after) for c in changes] == [
        ("git push origin main", "ask", "deny"),
        ("git status", "allow", "ask"),
        ("src/app.py", "allow", "deny"),
        ("docs/readme.md", "ask", "deny"),
    ]
    assert 'rule "git push *" → deny' in changes[0].reason


def test_replay_under_a_looser_policy(recorder: Recorder, tmp_path: Path) -> None:
    recorder.run("ls -la")
    recorder.run("make deploy", answer="reject")
    recorder.run("rm -rf build")
    recorder.check("npm test")
    loose = tmp_path / "loose.md"
    loose.write_text('---\npermission:\n  bash:\n    "*": allow\n---\n', encoding="utf-8")
    changes = replay(all_rows(recorder.path), load_policy_file(loose), HOME)
    assert [(c.row.subject, c.before, c.after) for c in changes] == [
        ("make deploy", "ask", "allow"),
        ("rm -rf build", "deny", "allow"),
    ]


def test_replay_under_the_same_policy_changes_nothing(recorder: Recorder, tmp_path: Path) -> None:
    recorder.run("ls -la")
    recorder.run("make deploy", answer="once")
    recorder.run("rm -rf build")
    recorder.check_path("src/app.py")
    assert replay(all_rows(recorder.path), load_policy_file(tmp_path / "dev.md"), HOME) == []


def test_a_harness_session_can_be_followed(recorder: Recorder) -> None:
    policy = recorder.policies["dev"]
    for session, command in (("s-1", "ls"), ("s-2", "pwd"), ("s-1", "git status")):
        recorder._write(
            {
                "kind": "decision",
                "op": "check",
                "agent": "dev",
                "cwd": PROJECT,
                "decided_by": "policy",
                "command": command,
                "context": {"harness": "claude-code", "session": session, "call": "toolu_1"},
            },
            f"c{command}",
            None,
            encode(decide_command(policy, command, PROJECT, HOME).to_json())[:-1],
        )
    recorder.check_path("a.txt")  # no context at all
    kept = [r for r in all_rows(recorder.path) if Filter(session="s-1").keeps(r)]
    assert [r.decision["command"] for r in kept] == ["ls", "git status"]
