"""``gatekeeper audit``: review, summarise, verify and replay the audit log."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from gatekeeper.audit import AuditError, Line, log_files, read_lines, read_records, verify
from gatekeeper.audit_review import (
    Filter,
    Row,
    parse_when,
    record_time,
    replay,
    rows,
    suggestion_snippet,
    summarise,
)
from gatekeeper.errors import GatekeeperError
from gatekeeper.paths import default_audit_log
from gatekeeper.policy import load_policy_file
from gatekeeper.text import visible

_COLOURS = {"allow": "32", "ask": "33", "deny": "31"}


def audit_path(flag: str | None) -> Path:
    if flag:
        return Path(flag)
    env = os.environ.get("GATEKEEPER_AUDIT_LOG")
    return Path(env) if env else default_audit_log()


def _require(path: Path) -> None:
    if not log_files(path):
        raise GatekeeperError(
            f"{path}: no audit log there (start the daemon, or give --audit-log PATH)"
        )


def _until(text: str) -> datetime:
    """A date alone means up to the end of that day."""
    when = parse_when(text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        when += timedelta(days=1)
    return when


def make_filter(
    since: str | None,
    until: str | None,
    agent: str | None,
    decision: str | None,
    grep: str | None,
    session: str | None = None,
) -> Filter:
    return Filter(
        since=parse_when(since) if since else None,
        until=_until(until) if until else None,
        agent=agent,
        decision=decision,
        grep=grep,
        session=session,
    )


def _use_colour(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR")


def _when(record: dict[str, Any]) -> str:
    t = record_time(record)
    if t.year == 1:
        return "?"
    local = t.astimezone()
    if local.date() == datetime.now(UTC).astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def format_row(row: Row, width: int, colour: bool) -> str:
    decision = row.final
    shown = f"{decision:<13.13}"
    if colour:
        code = _COLOURS.get(decision.split("→")[-1] if "→" in decision else decision)
        if decision.endswith(("→once", "→always")):
            code = _COLOURS["allow"]
        elif "→" in decision:
            code = _COLOURS["deny"]
        if code:
            shown = f"\x1b[{code}m{shown}\x1b[0m"
    head = (
        f"{_when(row.decision):<16} {row.decision.get('agent')!s:<16.16} {shown} "
        f"{row.result:<18.18} "
    )
    subject = visible(row.subject)
    room = max(20, width - 16 - 1 - 16 - 1 - 13 - 1 - 18 - 1)
    if len(subject) > room:
        subject = subject[: room - 1] + "…"
    return head + subject


def show_table(path: Path, flt: Filter, as_json: bool, follow: bool) -> int:
    _require(path)
    out = sys.stdout
    width = shutil.get_terminal_size((120, 24)).columns
    colour = _use_colour(out)
    tail_from: BinaryIO | None = None
    if follow:
        # Open the live file before reading the log, so that nothing written in between is
        # missed; what is read twice is skipped by its seq.
        try:
            tail_from = path.open("rb")
        except OSError as exc:
            raise AuditError(f"{path}: cannot follow: {exc.strerror}") from None
        tail_from.seek(0, os.SEEK_END)
    try:
        records = [rec for _, rec in read_records(path)]
        all_rows = rows(records)
        selected = [r for r in all_rows if flt.keeps(r)]
        if not as_json:
            out.write(
                f"{'TIME':<16} {'AGENT':<16} {'DECISION':<13} {'RESULT':<18} COMMAND / PATH\n"
            )
        for r in selected:
            if as_json:
                for rec in (r.decision, *r.outcomes):
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            else:
                out.write(format_row(r, width, colour) + "\n")
        out.flush()
        if tail_from is None:
            return 0
        seen = max((s for rec in records if isinstance(s := rec.get("seq"), int)), default=0)
        # Runs still going on when following starts: their outcomes are shown as they come.
        live = {r.decision["seq"]: r for r in all_rows if isinstance(r.decision.get("seq"), int)}
        f, tail_from = tail_from, None
        return _follow(_tail(path, f), seen, live, flt, as_json, width, colour)
    finally:
        if tail_from is not None:
            tail_from.close()


def _next_file(path: Path, current: os.stat_result) -> Path | None:
    """The file to read after the one open (``current``), once it was rotated; None while it
    is still the live file. Several rotations between two looks are read in order."""
    try:
        live = os.stat(path)
        if (live.st_dev, live.st_ino) == (current.st_dev, current.st_ino):
            return None
    except FileNotFoundError:
        return None  # between the daemon's rename and its new file: look again soon
    files = log_files(path)
    for i, f in enumerate(files):
        try:
            st = f.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (current.st_dev, current.st_ino):
            return files[i + 1] if i + 1 < len(files) else None
    return path  # the open file was rotated away and removed: go on with the live one


def _tail(path: Path, f: BinaryIO) -> Generator[dict[str, Any], None, None]:
    """New records as the daemon appends them to ``f`` (a file of the log open where to start)
    and then to the files that follow it, across rotations (until interrupted)."""
    try:
        buf = b""
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        yield rec
                continue
            nxt = _next_file(path, os.fstat(f.fileno()))
            if nxt is None:
                time.sleep(0.2)
                continue
            # The daemon may have appended to this file after the read above and before it
            # renamed it: read that first.
            if f.read(1):
                f.seek(-1, os.SEEK_CUR)
                continue
            try:
                new = nxt.open("rb")
            except FileNotFoundError:
                time.sleep(0.2)
                continue
            f.close()
            f = new
            buf = b""
    finally:
        f.close()


def _follow(
    records: Iterator[dict[str, Any]],
    seen: int,
    live: dict[int, Row],
    flt: Filter,
    as_json: bool,
    width: int,
    colour: bool,
) -> int:
    """Print ``records`` as they come, but those up to seq ``seen`` (already shown)."""
    out = sys.stdout
    shown = {id(r) for r in live.values() if flt.keeps(r)}  # rows printed in the table
    try:
        for rec in records:
            if isinstance(rec.get("seq"), int) and rec["seq"] <= seen:
                continue
            kind = rec.get("kind")
            row: Row | None = None
            if kind == "decision":
                row = Row(rec)
                if isinstance(rec.get("seq"), int):
                    live[rec["seq"]] = row
            elif kind == "outcome":
                row = live.get(rec.get("ref", -1))
                if row is not None:
                    row.outcomes.append(rec)  # before filtering: --decision once needs it
            if row is None or not flt.keeps(row):
                continue
            if as_json:
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            elif kind == "decision" or id(row) not in shown:
                # An outcome of a request not shown yet (it matches only now, by its answer)
                # is shown with its request.
                out.write(format_row(row, width, colour) + "\n")
            else:
                out.write(f"{'':<16} {'':<16} ↳ {row.final:<11} {row.result}\n")
            shown.add(id(row))
            out.flush()
    except KeyboardInterrupt:
        return 0
    return 0


def show_summary(path: Path, flt: Filter, as_json: bool, top: int) -> int:
    _require(path)
    selected = [r for r in rows(rec for _, rec in read_records(path)) if flt.keeps(r)]
    s = summarise(selected, top=top)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "requests": s.total,
                    "by_decision": dict(s.by_decision),
                    "by_agent": dict(s.by_agent),
                    "by_answer": dict(s.by_answer),
                    "asked_most": [{"subject": k, "count": n} for k, n in s.asked],
                    "approved_again": [
                        {
                            "agent": x.agent,
                            "permission": x.permission,
                            "pattern": x.pattern,
                            "approvals": x.approvals,
                            "examples": x.examples,
                        }
                        for x in s.approved_again
                    ],
                },
                ensure_ascii=False,
            )
            + "\n"
        )
        return 0
    w = sys.stdout.write
    w(f"{s.total} requests\n\nby decision:\n")
    for k, n in s.by_decision.most_common():
        w(f"  {k:<8} {n:>7}\n")
    if s.by_answer:
        w("human answers:\n")
        for k, n in s.by_answer.most_common():
            w(f"  {k:<8} {n:>7}\n")
    w("by agent:\n")
    for k, n in s.by_agent.most_common():
        w(f"  {k:<24} {n:>7}\n")
    if s.asked:
        w("asked about most:\n")
        for k, n in s.asked:
            w(f"  {n:>5}  {visible(k)[:100]}\n")
    if s.approved_again:
        w("approved again and again (a rule would have allowed them):\n")
        for x in s.approved_again:
            w(
                f'  {x.approvals:>5}  {x.agent}: {x.permission} "{visible(x.pattern)}": allow'
                f"   e.g. {visible(x.examples[0])[:60]}\n"
            )
        w("`gatekeeper audit suggest` prints them as frontmatter.\n")
    return 0


def show_suggest(path: Path, flt: Filter, min_approvals: int) -> int:
    _require(path)
    selected = [r for r in rows(rec for _, rec in read_records(path)) if flt.keeps(r)]
    s = summarise(selected, min_approvals=min_approvals)
    sys.stdout.write(suggestion_snippet(s.approved_again))
    return 0


def run_verify(path: Path, anchor: str | None, as_json: bool) -> int:
    _require(path)
    lines: list[Line] = list(read_lines(path))
    v = verify(lines)
    anchored = None
    if anchor is not None and v.ok:
        anchored = any(
            (ln.record or {}).get("hash") == anchor for ln in lines if ln.record is not None
        )
        if not anchored:
            v.ok = False
            v.problems.append(
                f"the anchor {anchor} is not in the chain: records were removed "
                "or rewritten since it was taken"
            )
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "ok": v.ok,
                    "records": v.records,
                    "first_seq": v.first_seq,
                    "last_seq": v.last_seq,
                    "head": v.head,
                    "problems": v.problems,
                    "notes": v.notes,
                }
            )
            + "\n"
        )
        return 0 if v.ok else 1
    for note in v.notes:
        sys.stdout.write(f"note: {note}\n")
    if not v.ok:
        sys.stdout.write(f"FAILED: {v.problems[0]}\n")
        return 1
    files = len(log_files(path))
    sys.stdout.write(
        f"ok: {v.records} records in {files} file(s), seq {v.first_seq}..{v.last_seq}\n"
        f"head {v.head}\n"
        "(keep the head somewhere else and pass it as --anchor later: that also catches "
        "records cut off the end)\n"
    )
    return 0


def run_replay(path: Path, policy_file: str, flt: Filter, as_json: bool) -> int:
    _require(path)
    policy = load_policy_file(policy_file)
    selected = [r for r in rows(rec for _, rec in read_records(path)) if flt.keeps(r)]
    changes = replay(selected, policy, os.environ.get("HOME"))
    if as_json:
        for c in changes:
            sys.stdout.write(
                json.dumps(
                    {
                        "seq": c.row.decision.get("seq"),
                        "subject": c.row.subject,
                        "before": c.before,
                        "after": c.after,
                        "reason": c.reason,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        return 0
    sys.stdout.write(
        f"{len(selected)} recorded requests re-decided under {policy_file}: "
        f"{len(changes)} would change\n"
    )
    for c in changes:
        sys.stdout.write(
            f"  {c.before:>5} → {c.after:<5}  {visible(c.row.subject)[:90]}\n"
            f"                {visible(c.reason)[:110]}\n"
        )
    return 0


def main_audit(args: Any) -> int:
    try:
        path = audit_path(getattr(args, "audit_log", None))
        as_json = bool(getattr(args, "json", False))
        flt = make_filter(
            getattr(args, "since", None),
            getattr(args, "until", None),
            getattr(args, "agent", None),
            getattr(args, "decision", None),
            getattr(args, "grep", None),
            getattr(args, "session", None),
        )
        sub = args.audit_command
        if sub is None:
            return show_table(path, flt, as_json, args.follow)
        if sub == "summary":
            return show_summary(path, flt, as_json, args.top)
        if sub == "suggest":
            return show_suggest(path, flt, args.min)
        if sub == "verify":
            return run_verify(path, args.anchor, as_json)
        if sub == "replay":
            return run_replay(path, args.policy, flt, as_json)
    except AuditError as exc:
        sys.stderr.write(f"gatekeeper audit: {exc}\n")
        return 1
    return 2
