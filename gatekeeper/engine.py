"""Decisions: a policy plus the parts of a command (or a file path) → allow / ask / deny.

Pure: no I/O. The strictest part wins (deny > ask > allow); every decision carries each part's
subject, its decision and the rule that matched it, so it can always explain itself.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from gatekeeper.errors import BadInput
from gatekeeper.policy import STRICTNESS, Action, Policy, Rule
from gatekeeper.shell import Analysis, Part, analyse, check_input

_CACHEABLE = 4096  # commands up to this length keep their analysis in an LRU cache


@dataclass(frozen=True, slots=True)
class PartDecision:
    """The decision for one part of a request."""

    permission: str
    subject: str
    decision: Action
    rule: Rule | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subject": self.subject,
            "permission": self.permission,
            "decision": self.decision,
            "rule": self.rule.to_json() if self.rule is not None else None,
        }
        if self.note:
            out["note"] = self.note
        return out

    def explain(self) -> str:
        if self.rule is not None:
            origin = "" if self.rule.origin.startswith("permission") else f", {self.rule.origin}: false"
            why = f'rule "{self.rule.pattern}" → {self.rule.action} ({self.rule.source}{origin})'
        else:
            why = f"no {self.permission} rule matches (ask)"
        if self.note:
            why += f"; {self.note}"
        return why


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision for a whole request and its reasons."""

    decision: Action
    reason: str
    parts: tuple[PartDecision, ...]
    agent: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "parts": [p.to_json() for p in self.parts],
        }


def _stricter(a: Action, b: Action) -> Action:
    return a if STRICTNESS[a] >= STRICTNESS[b] else b


def decide_part(policy: Policy, part: Part) -> PartDecision:
    """Decide one part: its rule, its normalised spellings (only ever stricter), its floor."""
    action, rule = policy.lookup(part.permission, part.subject)
    for variant in part.variants:
        v_action, v_rule = policy.lookup(part.permission, variant)
        if STRICTNESS[v_action] > STRICTNESS[action]:
            action, rule = v_action, v_rule
    note = part.note
    if STRICTNESS[part.floor] > STRICTNESS[action]:
        action = part.floor
    elif part.floor == "allow":
        note = part.note
    return PartDecision(part.permission, part.subject, action, rule, note)


def combine(parts: tuple[PartDecision, ...], agent: str = "") -> Decision:
    """The strictest part decides; the reason names the parts that made it so."""
    if not parts:
        return Decision("ask", "ask: nothing to decide", parts, agent)
    final: Action = "allow"
    for p in parts:
        final = _stricter(final, p.decision)
    if final == "allow":
        if len(parts) == 1:
            reason = f"allow: `{parts[0].subject}`: {parts[0].explain()}"
        else:
            reason = f"allow: all {len(parts)} parts are allowed"
    else:
        deciding = [p for p in parts if p.decision == final]
        shown = "; ".join(f"`{_short(p.subject)}`: {p.explain()}" for p in deciding[:3])
        more = f" (and {len(deciding) - 3} more)" if len(deciding) > 3 else ""
        reason = f"{final}: {shown}{more}"
    return Decision(final, reason, parts, agent)


def _short(text: str, limit: int = 120) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=8192)
def _cached_analysis(command: str, cwd: str, home: str | None) -> Analysis:
    return analyse(command, cwd, home)


def analyse_command(command: str | bytes, cwd: str, home: str | None = None) -> Analysis:
    """:func:`gatekeeper.shell.analyse`, remembered for short commands (it is pure)."""
    text = check_input(command)
    if len(text) <= _CACHEABLE:
        return _cached_analysis(text, cwd, home)
    return analyse(text, cwd, home)


def decide_command(
    policy: Policy, command: str | bytes, cwd: str, home: str | None = None
) -> Decision:
    """Decide a shell command line run in ``cwd`` (the project root) under ``policy``."""
    analysis = analyse_command(command, cwd, home)
    return combine(tuple(decide_part(policy, p) for p in analysis.parts), policy.name)


def path_parts(permission: str, path: str, cwd: str, home: str | None = None) -> tuple[Part, ...]:
    """The parts of a file request: the path under edit/write rules, and outside the root
    the external_directory check."""
    if permission not in ("edit", "write"):
        raise BadInput(f"permission must be edit or write, not {permission!r}")
    path = check_input(path)
    if not path:
        raise BadInput("path is empty")
    if path.startswith("~") and home is not None and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    root = posixpath.normpath(cwd)
    full = posixpath.normpath(posixpath.join(root, path))
    inside = full == root or full.startswith(root.rstrip("/") + "/")
    if inside:
        return (Part(permission, posixpath.relpath(full, root), variants=(full,)),)
    return (Part(permission, full), Part("external_directory", full))


def decide_path(
    policy: Policy, permission: str, path: str | bytes, cwd: str, home: str | None = None
) -> Decision:
    """Decide an edit or write of ``path`` (relative to ``cwd``, the project root)."""
    text = check_input(path)
    parts = path_parts(permission, text, cwd, home)
    return combine(tuple(decide_part(policy, p) for p in parts), policy.name)


def decide_other(policy: Policy, permission: str, subject: str) -> Decision:
    """Answer a permission gatekeeper does not enforce itself (webfetch, read, …)."""
    subject = check_input(subject)
    return combine((decide_part(policy, Part(permission, subject)),), policy.name)
