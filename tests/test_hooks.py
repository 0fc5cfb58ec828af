"""The hook processes (gatekeeper.hooks) against a real daemon: what Claude Code and Codex are
told for every decision and every failure, and what reaches the audit log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.client import Client
from gatekeeper.hooks import patch_paths
from tests.daemon_util import TEST_AGENT, make_policy_dir, short_dir, subprocess_daemon

AGENT = TEST_AGENT.replace(
    '  edit:\n    "*": ask\n',
    '  edit:\n    "*": allow\n    "locked/*": deny\n  write:\n    "*": allow\n'
    '    "locked/*": deny\n    "sub/*.log": deny\n',
)


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture
def daemon(where: Path) -> Iterator[Path]:
    sock = where / "s.sock"
    config = where / "config.toml"
    config.write_text("[serve]\napprovers_need_tty = false\n")
    log = where / "audit.jsonl"
    with subprocess_daemon(
        sock,
        make_policy_dir(where, AGENT),
        "--config", str(config), "--approval-timeout", "20", "--audit-log", str(log),
    ):  # fmt: skip
        yield sock


def payload(tool: str, tool_input: dict[str, Any], cwd: Path, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": "sess-1",
        "cwd": str(cwd),
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": "call-1",
        **extra,
    }


def hook(
    harness: str,
    sock: Path,
    body: dict[str, Any] | bytes,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any] | None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if cwd is None and isinstance(body, dict) and Path(str(body.get("cwd"))).is_dir():
        cwd = Path(body["cwd"])  # harnesses start hooks in the session's directory
    clean = {k: v for k, v in os.environ.items() if k != "CLAUDE_PROJECT_DIR"}
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper.hooks", harness, "--socket", str(sock), *args],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode().strip()
    return json.loads(out) if out else None


def said(result: dict[str, Any] | None) -> tuple[str, str]:
    assert result is not None
    inner = result["hookSpecificOutput"]
    return inner["permissionDecision"], inner["permissionDecisionReason"]


# -- Codex: only a block counts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo hi", None),  # allow: silence
        ("rm -rf build", "deny"),
        ("touch notes", "deny"),  # ask: Codex has no prompt, so it blocks
    ],
)
def test_codex_hears_allow_as_silence_and_everything_else_as_deny(
    daemon: Path, where: Path, command: str, expected: str | None
) -> None:
    result = hook("codex", daemon, payload("Bash", {"command": command}, where))
    if expected is None:
        assert result is None
        return
    decision, reason = said(result)
    assert decision == expected
    assert reason  # Codex ignores a deny without a reason


def test_codex_ask_says_how_to_get_a_person(daemon: Path, where: Path) -> None:
    _, reason = said(hook("codex", daemon, payload("Bash", {"command": "touch x"}, where)))
    assert "--wait" in reason


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("*** Begin Patch\n*** Add File: ok.txt\n+hi\n*** End Patch\n", None),
        ("*** Begin Patch\n*** Add File: locked/a.txt\n+hi\n*** End Patch\n", "deny"),
        (
            "*** Begin Patch\n*** Update File: ok.txt\n*** Move to: locked/b.txt\n@@\n-a\n+b\n",
            "deny",
        ),
        ("*** Begin Patch\n*** Delete File: locked/c.txt\n*** End Patch\n", "deny"),
        ("*** Begin Patch\n*** End Patch\n", "deny"),  # names no file: cannot be decided
        # Codex trims a header's blanks and splits at \n only: a header hidden behind blanks
        # or after another line separator is still a file the patch touches.
        ("*** Begin Patch\n*** Add File: ok.txt\n+a\n *** Add File: locked/e\n+b\n", "deny"),
        ("*** Begin Patch\n*** Add File: ok.txt\n+a\n\t*** Add File: locked/e\n", "deny"),
        ("*** Begin Patch\r\n*** Add File: locked/e\r\n+b\r\n*** End Patch\r\n", "deny"),
        ("*** Begin Patch\n*** Add File: ok\x1c/../locked/e\n+b\n*** End Patch\n", "deny"),
        ("*** Begin Patch\n*** Add File: ok.txt\n*** Frobnicate File: x\n", "deny"),
    ],
)
def test_codex_apply_patch_is_decided_path_by_path(
    daemon: Path, where: Path, patch: str, expected: str | None
) -> None:
    result = hook("codex", daemon, payload("apply_patch", {"command": patch}, where))
    assert (said(result)[0] if result else None) == expected


def test_patch_paths() -> None:
    text = (
        "*** Begin Patch\n*** Add File: a\n+x\n*** Update File: b\n*** Move to: c\n"
        "*** Delete File: d\n*** End Patch\n"
    )
    assert patch_paths(text) == [("write", "a"), ("edit", "b"), ("write", "c"), ("edit", "d")]


def test_codex_takes_the_root_from_its_session_record(daemon: Path, where: Path) -> None:
    (where / "sub").mkdir()
    transcript = where / "rollout.jsonl"
    transcript.write_text(json.dumps({"type": "session_meta", "payload": {"cwd": str(where)}}))
    body = payload(
        "Bash", {"command": "echo x > x.log"}, where / "sub", transcript_path=str(transcript)
    )
    assert said(hook("codex", daemon, body))[0] == "deny"  # sub/x.log, relative to the root
    # No record (codex exec --ephemeral): the root is where Codex starts its hooks, the
    # session's directory — not the payload's cwd, which follows the command's workdir.
    body["transcript_path"] = None
    assert said(hook("codex", daemon, body, cwd=where))[0] == "deny"


def test_codex_apply_patch_through_the_shell_is_decided_by_its_files(
    daemon: Path, where: Path
) -> None:
    command = (
        "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: locked/x\n+hi\n*** End Patch\nEOF"
    )
    assert said(hook("codex", daemon, payload("Bash", {"command": command}, where)))[0] == "deny"


# -- failures -------------------------------------------------------------------------------


@pytest.fixture
def hung(where: Path) -> Iterator[Path]:
    """A socket that accepts connections and never answers."""
    path = where / "hung.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield path
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.mark.parametrize("failure", ["no daemon", "hung daemon", "bad JSON"])
@pytest.mark.parametrize(
    ("harness", "mode", "expected"),
    [
        ("codex", "default", "deny"),
        ("claude-code", "default", "ask"),  # a person sees Claude Code's prompt
        ("claude-code", "bypassPermissions", "deny"),  # nobody would see an ask
        ("claude-code", "dontAsk", "deny"),
    ],
)
def test_failures_never_allow(
    where: Path, hung: Path, failure: str, harness: str, mode: str, expected: str
) -> None:
    sock = {"no daemon": where / "nobody.sock", "hung daemon": hung}.get(failure, hung)
    body: dict[str, Any] | bytes = payload(
        "Bash", {"command": "echo hi"}, where, permission_mode=mode
    )
    if failure == "bad JSON":
        body = b'{"tool_name": "Bash", "permission_mode": "' + mode.encode() + b'", '
        expected = "deny" if harness == "codex" else "ask"  # the mode is unknown: ask
    decision, reason = said(hook(harness, sock, body, "--deadline", "1"))
    assert decision == expected
    assert "gatekeeper" in reason


# -- Claude Code ------------------------------------------------------------------------------


def test_claude_root_and_ids_reach_the_audit_log(daemon: Path, where: Path) -> None:
    (where / "sub").mkdir()
    body = payload("Bash", {"command": "echo x > x.log"}, where / "sub")
    body["permission_mode"] = "acceptEdits"
    decision, _ = said(hook("claude-code", daemon, body, env={"CLAUDE_PROJECT_DIR": str(where)}))
    assert decision == "deny"  # sub/x.log, relative to the project
    records = [json.loads(x) for x in (where / "audit.jsonl").read_text().splitlines()]
    (rec,) = [r for r in records if r.get("kind") == "decision"]
    assert (rec["cwd"], rec["root"]) == (str(where / "sub"), str(where))
    assert rec["context"] == {
        "harness": "claude-code",
        "session": "sess-1",
        "call": "call-1",
        "mode": "acceptEdits",
    }


@pytest.mark.parametrize(("answer", "expected"), [("once", "allow"), ("reject", "deny")])
def test_wait_turns_an_ask_into_a_persons_answer(
    daemon: Path, where: Path, answer: str, expected: str
) -> None:
    def approve() -> None:
        with Client(daemon) as c:
            for _ in range(400):
                pending = c.pending()
                if pending:
                    c.answer(pending[0]["request"], answer, message="not now")
                    return
                threading.Event().wait(0.05)

    t = threading.Thread(target=approve)
    t.start()
    result = hook("claude-code", daemon, payload("Bash", {"command": "touch x"}, where), "--wait")
    t.join()
    decision, reason = said(result)
    assert decision == expected
    if answer == "reject":
        assert "not now" in reason
