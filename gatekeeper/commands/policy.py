"""``gatekeeper policy lint|test|explain``: review agent files before trusting them.

``lint`` and ``test`` are made for CI and pre-commit: findings as text, JSON lines or SARIF
2.1.0, exit 0 when clean, 1 on findings (errors; warnings too with ``--strict``), 2 when a file
cannot be read at all.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from gatekeeper import __version__, readers
from gatekeeper.engine import decide_command, decide_path
from gatekeeper.errors import GatekeeperError, PolicyError
from gatekeeper.lint import Finding, explain_policy, lint_policy, run_tests, sarif_log
from gatekeeper.policy import Policy, load_policy_file
from gatekeeper.sources import OpencodeSources, load_agents

Format = Literal["text", "json", "sarif"]
EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNREADABLE = 0, 1, 2


def _unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read at all (missing, not a file, no permission), else None."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot read: permission denied"
    return None


def repo_root(start: Path) -> Path:
    """The git work tree ``start`` is in (where SARIF URIs are relative to), else ``start``."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


def artifact_uri(path: str, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes, or a file: URI when outside it."""
    p = Path(path).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_uri()


def _check(
    files: Sequence[str], per_policy: Callable[[Policy], list[Finding]]
) -> tuple[list[tuple[str, Finding]], bool, int]:
    """(file, finding) pairs, whether some file could not be read, and how many tests ran."""
    out: list[tuple[str, Finding]] = []
    unreadable = False
    tests = 0
    for f in files:
        why = _unreadable(f)
        if why is not None:
            unreadable = True
            out.append((f, Finding("error", f, why, "unreadable")))
            continue
        try:
            policy = load_policy_file(f)
        except PolicyError as exc:
            where, _, message = str(exc).partition(": ")
            out.append((f, Finding("error", where, message, "load-error")))
            continue
        tests += len(policy.tests)
        out.extend((f, finding) for finding in per_policy(policy))
    return out, unreadable, tests


def _report(
    found: list[tuple[str, Finding]],
    *,
    files: Sequence[str],
    fmt: Format,
    summary: str,
) -> None:
    if fmt == "json":
        for _, finding in found:
            record = {
                "level": finding.level,
                "source": finding.source,
                "message": finding.message,
                "rule": finding.kind,
            }
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif fmt == "sarif":
        root = repo_root(Path.cwd())
        pairs = [(artifact_uri(f, root), finding) for f, finding in found]
        log = sarif_log(pairs, version=__version__, root_uri=root.as_uri() + "/")
        sys.stdout.write(json.dumps(log, ensure_ascii=False, indent=2) + "\n")
    else:
        for _, finding in found:
            sys.stdout.write(f"{finding}\n")
        sys.stdout.write(summary + "\n")


def _status(found: list[tuple[str, Finding]], *, strict: bool, unreadable: bool) -> int:
    if unreadable:
        return EXIT_UNREADABLE
    failing = [x for _, x in found if x.level == "error" or strict]
    return EXIT_FINDINGS if failing else EXIT_CLEAN


def lint(*, files: Sequence[str], strict: bool, fmt: Format = "text") -> int:
    """Lint each file (its test cases included); exit 1 on any error (or any warning with
    --strict), 2 when a file cannot be read, else 0."""
    found, unreadable, _ = _check(files, lint_policy)
    errors = sum(1 for _, x in found if x.level == "error")
    summary = f"{len(files)} file(s): {errors} error(s), {len(found) - errors} warning(s)"
    _report(found, files=files, fmt=fmt, summary=summary)
    return _status(found, strict=strict, unreadable=unreadable)


def run_file_tests(*, files: Sequence[str], strict: bool, fmt: Format = "text") -> int:
    """Run only the files' own test cases; exit 1 when one fails (with --strict also when a
    file has none), 2 when a file cannot be read, else 0."""

    def per_policy(policy: Policy) -> list[Finding]:
        if not policy.tests:
            where = f"{Path(policy.path).name}:1"
            return [Finding("warning", where, "no test cases (gatekeeper: tests:)", "no-tests")]
        return run_tests(policy)

    found, unreadable, tests = _check(files, per_policy)
    failed = sum(1 for _, x in found if x.kind == "test-failed")
    broken = sum(1 for _, x in found if x.kind in ("load-error", "unreadable"))
    summary = f"{len(files)} file(s), {tests} test(s): {tests - failed} passed, {failed} failed"
    if broken:
        summary += f"; {broken} file(s) did not load"
    _report(found, files=files, fmt=fmt, summary=summary)
    return _status(found, strict=strict, unreadable=unreadable)


def explain(*, file: str) -> int:
    policy = load_policy_file(file)
    sys.stdout.write("\n".join(explain_policy(policy)) + "\n")
    return 0


def explain_agent(
    *,
    agent: str,
    project: str | None,
    config_dir: str | None,
    cwd: str | None,
    command: str | None,
    path: str | None,
    permission: str,
    as_json: bool,
) -> int:
    """An opencode agent merged from every source, each rule with its file and line; with a
    command or path, the decision and the source line that decided each part."""
    src = OpencodeSources.default(project or ".")
    if config_dir is not None:
        src = OpencodeSources(src.project, Path(config_dir).resolve(), src.home)
    loaded = load_agents(src)
    found = loaded.agents.get(agent)
    if found is None:
        known = ", ".join(sorted(loaded.agents)) or "none"
        raise GatekeeperError(f"no opencode agent named {agent!r} (agents: {known})")
    home = str(src.home)
    rules = found.rules(home)
    policy = found.policy(home)
    root = str(src.project)
    decision = None
    if command is not None:
        decision = decide_command(
            policy, command, cwd or root, home, root=root, confirm=readers.confirm
        )
    elif path is not None:
        decision = decide_path(policy, permission, path, cwd or root, home, root=root)
    if as_json:
        out: dict[str, object] = {
            "agent": agent,
            "sources": found.files,
            "permission_sources": loaded.top_files,
            "rules": [
                {"permission": k, "pattern": r.pattern, "action": r.action, "source": r.source}
                for k, r in rules
            ],
            "disabled": {k: r.source for k, r in found.disabled.items()},
        }
        if decision is not None:
            out["decision"] = decision.to_json()
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return 0
    lines = [f"agent {agent}: opencode's sources merged (lowest precedence first)"]
    lines += [f"  top-level permission: {f}" for f in loaded.top_files]
    lines += [f"  agent definition:     {f}" for f in found.files]
    lines.append("rules, in order (the last rule whose permission and pattern match wins):")
    for i, (k, r) in enumerate(rules, 1):
        lines.append(f"  {i:>3}. {k:<18} {r.pattern!r:<30} {r.action:<5}  {r.source}")
    for k, r in sorted(found.disabled.items()):
        lines.append(f"  {k}: every request denied by {r.origin}: false ({r.source})")
    if decision is not None:
        subject = command if command is not None else f"{permission} {path}"
        lines.append(f"decision for {subject!r}: {decision.decision}")
        for part in decision.parts:
            lines.append(
                f"  {part.permission} {part.subject!r}: {part.decision} — {part.explain()}"
            )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
