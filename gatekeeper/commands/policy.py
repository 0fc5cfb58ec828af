"""``gatekeeper policy lint|explain``: review agent files before trusting them."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gatekeeper.errors import PolicyError
from gatekeeper.lint import Finding, explain_policy, lint_policy
from gatekeeper.policy import load_policy_file


def lint(*, files: Sequence[str], strict: bool, as_json: bool) -> int:
    """Lint each file; exit 1 on any error (or any warning with --strict), else 0."""
    all_findings: list[Finding] = []
    for f in files:
        try:
            policy = load_policy_file(f)
        except PolicyError as exc:
            where, _, message = str(exc).partition(": ")
            all_findings.append(Finding("error", where, message))
            continue
        all_findings.extend(lint_policy(policy))
    if as_json:
        for finding in all_findings:
            record = {"level": finding.level, "source": finding.source, "message": finding.message}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        for finding in all_findings:
            sys.stdout.write(f"{finding}\n")
        errors = sum(1 for x in all_findings if x.level == "error")
        warnings = len(all_findings) - errors
        sys.stdout.write(f"{len(files)} file(s): {errors} error(s), {warnings} warning(s)\n")
    failing = [x for x in all_findings if x.level == "error" or strict]
    return 1 if failing else 0


def explain(*, file: str) -> int:
    policy = load_policy_file(file)
    sys.stdout.write("\n".join(explain_policy(policy)) + "\n")
    return 0
