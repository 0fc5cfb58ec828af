"""Reviewing the audit log (pure): rows, filters, summaries, suggested rules, replays."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gatekeeper import readers
from gatekeeper.approval import suggest_pattern
from gatekeeper.engine import Decision, PartDecision, decide_command, decide_path
from gatekeeper.errors import BadInput, GatekeeperError
from gatekeeper.policy import Policy, Rule
from gatekeeper.text import visible

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``1h``, ``30m``, ``2d``, ``1w`` ago, or an ISO date/time (UTC unless it says)."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise GatekeeperError(
            f"{text!r} is not a time: use 30m, 1h, 2d, 1w or an ISO date like 2026-11-27"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def record_time(record: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True)
class Row:
    """One request: its decision record and what became of it."""

    decision: dict[str, Any]
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    lost: bool = False  # the daemon crashed before this run's outcome was recorded

    @property
    def subject(self) -> str:
        d = self.decision
        return str(d.get("command") if "command" in d else d.get("path", ""))

    @property
    def policy_decision(self) -> str:
        return str((self.decision.get("decision") or {}).get("decision", "?"))

    @property
    def answer(self) -> str | None:
        """once / always / reject / timeout / cancelled, when a human was asked."""
        for o in self.outcomes:
            if o.get("answer") or o.get("decided_by") in ("timeout", "cancelled"):
                return str(o.get("answer") or o.get("decided_by"))
        return None

    @property
    def final(self) -> str:
        """What happened, in a word or two: ``allow``, ``deny``, ``ask→once``, ``ask``…"""
        answer = self.answer
        if answer is not None:
            return f"{self.policy_decision}→{answer}"
        return self.policy_decision

    @property
    def result(self) -> str:
        for o in self.outcomes:
            if o.get("outcome") == "exit":
                extra = " timed out" if o.get("timed_out") else ""
                return f"exit {o.get('exit')} ({o.get('duration_ms', 0):.0f} ms){extra}"
        for o in self.outcomes:
            if o.get("outcome") in ("blocked", "error"):
                return str(o["outcome"])
        if self.decision.get("op") == "check":
            return "check"
        return "no outcome (daemon crashed)" if self.lost else ""

    def text(self) -> str:
        """Everything searchable about the row."""
        d = self.decision
        bits = [self.subject, str((d.get("decision") or {}).get("reason", "")), str(d.get("cwd"))]
        bits.extend(str(o.get("message") or "") for o in self.outcomes)
        return "\n".join(bits)


def rows(records: Iterable[dict[str, Any]]) -> list[Row]:
    """Decision records with their outcomes attached (by ``ref``), oldest first."""
    out: list[Row] = []
    by_seq: dict[int, Row] = {}
    for rec in records:
        kind = rec.get("kind")
        if kind == "decision":
            row = Row(rec)
            out.append(row)
            if isinstance(rec.get("seq"), int):
                by_seq[rec["seq"]] = row
        elif kind == "outcome":
            ref = rec.get("ref")
            if isinstance(ref, int) and ref in by_seq:
                by_seq[ref].outcomes.append(rec)
        elif kind == "start" and isinstance(rec.get("unfinished"), list):
            for seq in rec["unfinished"]:
                if isinstance(seq, int) and seq in by_seq:
                    by_seq[seq].lost = True
    return out


@dataclass(frozen=True, slots=True)
class Filter:
    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None
    decision: str | None = None  # allow | ask | deny | once | always | reject | timeout
    grep: str | None = None
    session: str | None = None  # the harness's session id (the request's context)

    def keeps(self, row: Row) -> bool:
        when = record_time(row.decision)
        if self.since is not None and when < self.since:
            return False
        if self.until is not None and when > self.until:
            return False
        if self.agent is not None and row.decision.get("agent") != self.agent:
            return False
        if self.decision is not None and self.decision not in (row.policy_decision, row.answer):
            return False
        if self.session is not None:
            ctx = row.decision.get("context")
            if not isinstance(ctx, dict) or ctx.get("session") != self.session:
                return False
        return self.grep is None or self.grep in row.text()


# --------------------------------------------------------------------------------------------
# Summary and suggestions


@dataclass(slots=True)
class Suggestion:
    agent: str
    permission: str
    pattern: str
    approvals: int
    examples: list[str]
    last: str


@dataclass(slots=True)
class Summary:
    total: int
    by_decision: Counter[str]
    by_agent: Counter[str]
    by_answer: Counter[str]
    asked: list[tuple[str, int]]
    approved_again: list[Suggestion]


def _decision_of(row: Row) -> Decision | None:
    d = row.decision.get("decision")
    if not isinstance(d, dict):
        return None
    parts = []
    for p in d.get("parts", []):
        rule = p.get("rule")
        parts.append(
            PartDecision(
                str(p.get("permission", "bash")),
                str(p.get("subject", "")),
                p.get("decision", "ask"),
                Rule(rule["pattern"], rule["action"], rule["source"], "permission")
                if isinstance(rule, dict)
                else None,
                p.get("note"),
            )
        )
    return Decision(d.get("decision", "ask"), tuple(parts), str(row.decision.get("agent", "")))


def summarise(all_rows: Sequence[Row], *, top: int = 10, min_approvals: int = 2) -> Summary:
    by_decision: Counter[str] = Counter(r.policy_decision for r in all_rows)
    by_agent: Counter[str] = Counter(str(r.decision.get("agent")) for r in all_rows)
    by_answer: Counter[str] = Counter(a for r in all_rows if (a := r.answer) is not None)
    asked: Counter[str] = Counter(r.subject for r in all_rows if r.policy_decision == "ask")
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in all_rows:
        if r.answer not in ("once", "always"):
            continue
        decision = _decision_of(r)
        if decision is None:
            continue
        pattern = suggest_pattern(decision)
        if not pattern:
            continue
        permission = next((p.permission for p in decision.parts if p.decision == "ask"), "bash")
        groups[(str(r.decision.get("agent")), permission, pattern)].append(r)
    suggestions = [
        Suggestion(
            agent,
            permission,
            pattern,
            len(rs),
            list(dict.fromkeys(r.subject for r in rs))[:3],
            str(rs[-1].decision.get("time", "")),
        )
        for (agent, permission, pattern), rs in groups.items()
        if len(rs) >= min_approvals
    ]
    suggestions.sort(key=lambda s: (-s.approvals, s.agent, s.pattern))
    return Summary(
        len(all_rows), by_decision, by_agent, by_answer, asked.most_common(top), suggestions
    )


def _yaml_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar that reads back exactly: quotes, backslashes and
    every control, format or line-separator character escaped."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\t" or (
            0x20 <= o < 0x7F
            or (
                o >= 0xA0
                and unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
            )
        ):
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def suggestion_snippet(suggestions: Sequence[Suggestion]) -> str:
    """A frontmatter snippet per agent with the rules people keep approving by hand."""
    if not suggestions:
        return "# nothing was approved often enough to suggest a rule\n"
    out: list[str] = []
    by_agent: dict[str, list[Suggestion]] = defaultdict(list)
    for s in suggestions:
        by_agent[s.agent].append(s)
    for agent, items in sorted(by_agent.items()):
        out.append(
            f'# agent {agent}: add under its permission: (below the "*" rule, above any deny rule)'
        )
        out.append("permission:")
        by_perm: dict[str, list[Suggestion]] = defaultdict(list)
        for s in items:
            by_perm[s.permission].append(s)
        for perm, ss in sorted(by_perm.items()):
            out.append(f"  {perm}:")
            for s in ss:
                # The comment shows the example with every control character made visible:
                # a raw one would break the YAML (or act on the terminal it is printed to).
                example = visible(s.examples[0])[:60]
                rule = f"{_yaml_quoted(s.pattern)}: allow"
                out.append(f"    {rule}  # approved {s.approvals}x, e.g. {example}")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Replay


@dataclass(frozen=True, slots=True)
class Change:
    row: Row
    before: str
    after: str
    reason: str


def replay(all_rows: Iterable[Row], policy: Policy, home: str | None) -> list[Change]:
    """Re-decide every recorded request under ``policy``; the ones whose decision changes."""
    changes: list[Change] = []
    for r in all_rows:
        d = r.decision
        cwd = str(d.get("cwd") or "/")
        try:
            if "command" in d:
                new = decide_command(policy, str(d["command"]), cwd, home, confirm=readers.confirm)
            elif "path" in d:
                new = decide_path(
                    policy, str(d.get("permission") or "edit"), str(d["path"]), cwd, home
                )
            else:
                continue
        except (BadInput, GatekeeperError):
            continue
        if new.decision != r.policy_decision:
            changes.append(Change(r, r.policy_decision, new.decision, new.reason))
    return changes
