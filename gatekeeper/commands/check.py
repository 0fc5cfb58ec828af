"""``gatekeeper check``: decide one command (or file path) and explain the decision."""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from gatekeeper import readers
from gatekeeper.engine import Decision, decide_command, decide_path
from gatekeeper.selection import select_policy
from gatekeeper.text import visible

# Exit statuses of `gatekeeper check` (documented in README and docs/cli.md).
EXIT_ALLOW = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ASK = 3
EXIT_DENY = 4
EXIT_FOR = {"allow": EXIT_ALLOW, "ask": EXIT_ASK, "deny": EXIT_DENY}


def render(decision: Decision, request: str, out: TextIO) -> None:
    """Human-readable explanation, one line per part, invisible characters made visible."""
    out.write(f"{decision.decision.upper()}  {visible(request)}\n")
    width = max((len(p.permission) for p in decision.parts), default=4)
    for p in decision.parts:
        out.write(
            f"  {p.decision:<5}  {p.permission:<{width}}  {visible(p.subject) or '(empty)'}\n"
            f"         {' ' * width}  ↳ {p.explain()}\n"
        )


def run(
    *,
    command: str | None,
    permission: str | None,
    path: str | None,
    policy_file: str | None,
    policy_dir: str | None,
    agent: str | None,
    cwd: str | None,
    as_json: bool,
) -> int:
    policy = select_policy(policy_file, policy_dir, agent)
    where = os.path.abspath(cwd or os.getcwd())
    home = os.environ.get("HOME")
    if path is not None:
        decision = decide_path(policy, permission or "edit", path, where, home)
        request = path
    else:
        raw: str | bytes = sys.stdin.buffer.read() if command == "-" else command or ""
        decision = decide_command(policy, raw, where, home, confirm=readers.confirm)
        request = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if as_json:
        body = {"agent": policy.name, **decision.to_json()}
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
    else:
        render(decision, request, sys.stdout)
        sys.stdout.write(f"reason: {visible(decision.reason)}\n")
    return EXIT_FOR[decision.decision]
