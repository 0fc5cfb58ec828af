"""Agent integrations against a real daemon: Claude Code's hook, opencode's plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_util import TEST_AGENT, make_policy_dir, short_dir, subprocess_daemon

AGENT = TEST_AGENT.replace(
    '  edit:\n    "*": ask\n', '  edit:\n    "*": ask\n    "docs/*": allow\n'
)
PLUGIN = Path(__file__).resolve().parents[2] / "gatekeeper" / "integrations" / "opencode-plugin.js"


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture
def daemon(where: Path) -> Iterator[Path]:
    sock = where / "s.sock"
    config = where / "config.toml"
    # The test process answers approvals itself and has no terminal in CI.
    config.write_text("[serve]\napprovers_need_tty = false\n")
    with subprocess_daemon(
        sock, make_policy_dir(where, AGENT), "--config", str(config), "--approval-timeout", "20"
    ):
        yield sock


def payload(tool: str, tool_input: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """The shape Claude Code sends to a PreToolUse command hook."""
    return {
        "session_id": "abc123",
        "transcript_path": str(cwd / "transcript.jsonl"),
        "cwd": str(cwd),
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": "toolu_01ABC",
    }


def hook(sock: Path, body: bytes | dict[str, Any], *args: str) -> tuple[int, dict[str, Any] | None]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "hook", "claude-code", "--socket", str(sock), *args],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode().strip()
    return proc.returncode, (json.loads(out) if out else None)


def decision(result: dict[str, Any] | None) -> tuple[str, str]:
    assert result is not None
    inner = result["hookSpecificOutput"]
    assert inner["hookEventName"] == "PreToolUse"
    return inner["permissionDecision"], inner["permissionDecisionReason"]


@pytest.mark.parametrize(
    ("command", "expected", "named"),
    [
        ("echo hello && pwd", "allow", 'rule "echo *" → allow (tester.md:5)'),
        ("echo hi; rm -rf build", "deny", 'rule "rm *" → deny'),
        ("echo $(rm -rf ~)", "deny", 'rule "rm *" → deny'),
        ("touch notes.txt", "ask", 'rule "*" → ask (tester.md:4)'),
    ],
)
def test_bash_commands(daemon: Path, where: Path, command: str, expected: str, named: str) -> None:
    code, result = hook(daemon, payload("Bash", {"command": command, "description": "x"}, where))
    got, reason = decision(result)
    assert (code, got) == (0, expected)
    assert named in reason


@pytest.mark.parametrize(
    ("tool", "tool_input", "expected"),
    [
        ("Edit", {"file_path": "docs/guide.md", "old_string": "a", "new_string": "b"}, "allow"),
        ("Edit", {"file_path": "src/app.py", "old_string": "a", "new_string": "b"}, "ask"),
        ("MultiEdit", {"file_path": "docs/x.md", "edits": []}, "allow"),
        ("Write", {"file_path": "docs/new.md", "content": "hi"}, "allow"),
        ("Write", {"file_path": "/etc/passwd", "content": "x"}, "ask"),
    ],
)
def test_edits_by_path(
    daemon: Path, where: Path, tool: str, tool_input: dict[str, Any], expected: str
) -> None:
    if not tool_input["file_path"].startswith("/"):
        tool_input = {**tool_input, "file_path": str(where / tool_input["file_path"])}
    _, result = hook(daemon, payload(tool, tool_input, where))
    assert decision(result)[0] == expected


def test_other_tools_get_no_opinion(daemon: Path, where: Path) -> None:
    code, result = hook(daemon, payload("Read", {"file_path": str(where / "a")}, where))
    assert (code, result) == (0, None)


def test_no_daemon_means_ask(where: Path) -> None:
    code, result = hook(where / "nobody.sock", payload("Bash", {"command": "ls"}, where))
    got, reason = decision(result)
    assert (code, got) == (0, "ask")
    assert "no gatekeeper daemon" in reason


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "not a JSON object"),
        (json.dumps({"tool_name": "Bash", "tool_input": {}}).encode(), "without a command"),
    ],
)
def test_bad_payloads_mean_ask(daemon: Path, body: bytes, why: str) -> None:
    code, result = hook(daemon, body)
    got, reason = decision(result)
    assert (code, got) == (0, "ask")
    assert why in reason


def test_unknown_agent_means_ask(daemon: Path, where: Path) -> None:
    _, result = hook(daemon, payload("Bash", {"command": "ls"}, where), "--agent", "nobody")
    got, reason = decision(result)
    assert got == "ask"
    assert "unknown_agent" in reason


# -- installers ----------------------------------------------------------------------------


def gk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", "hook", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_claude_install_merges_is_idempotent_and_uninstalls(daemon: Path, where: Path) -> None:
    settings = where / "proj" / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    theirs = {"type": "command", "command": "my-linter", "timeout": 5}
    settings.write_text(
        json.dumps(
            {
                "model": "opus",
                "hooks": {
                    "PreToolUse": [{"matcher": "Bash", "hooks": [theirs]}],
                    "Stop": [{"hooks": [{"type": "command", "command": "notify"}]}],
                },
            }
        )
    )
    for _ in range(2):
        done = gk("install", "claude-code", "--project", str(where / "proj"),
                  "--agent", "tester", "--socket", str(daemon))  # fmt: skip
        assert done.returncode == 0, done.stderr
    data = json.loads(settings.read_text())
    assert data["model"] == "opus"
    assert data["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "notify"}]}]
    groups = data["hooks"]["PreToolUse"]
    assert len(groups) == 2 and groups[0]["hooks"] == [theirs]
    (ours,) = groups[1]["hooks"]
    assert ours["command"].startswith(sys.executable + " -P -E ")
    assert " -m gatekeeper.hooks claude-code " in ours["command"]
    assert ours["onFailure"] == "block"
    # The hook's own deadline is well inside the timeout Claude Code gives it.
    deadline = float(ours["command"].split("--deadline ")[1].split()[0])
    assert deadline <= ours["timeout"] / 2

    # The line Claude Code runs, run the way it runs it (a shell), answers.
    body = json.dumps(payload("Bash", {"command": "rm -rf x"}, where))
    ran = subprocess.run(["sh", "-c", ours["command"]], input=body, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert ran.returncode == 0
    assert json.loads(ran.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    # The hook runs in the project, which the agent may write to: a gatekeeper package it
    # wrote there is not the hook.
    fake = where / "proj" / "gatekeeper"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "hooks.py").write_text(
        'print(\'{"hookSpecificOutput": {"hookEventName": "PreToolUse", '
        '"permissionDecision": "allow", "permissionDecisionReason": "x"}}\')'
    )
    ran = subprocess.run(["sh", "-c", ours["command"]], input=body, capture_output=True,
                         text=True, check=False, cwd=where / "proj",
                         env={**os.environ, "PYTHONPATH": str(where / "proj")})  # fmt: skip
    assert json.loads(ran.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    # A hook that cannot run at all blocks (exit 2) rather than being a non-blocking error.
    broken = ours["command"].replace(sys.executable, "/nonexistent/python3")
    ran = subprocess.run(["sh", "-c", broken], input=body, capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert ran.returncode == 2
    assert "blocking" in ran.stderr

    assert gk("uninstall", "claude-code", "--project", str(where / "proj")).returncode == 0
    data = json.loads(settings.read_text())
    assert data["hooks"]["PreToolUse"] == [{"matcher": "Bash", "hooks": [theirs]}]
    assert (
        "no gatekeeper hook" in gk("uninstall", "claude-code", "--settings", str(settings)).stdout
    )


def test_claude_install_refuses_to_clobber_a_broken_settings_file(where: Path) -> None:
    settings = where / "settings.json"
    settings.write_text("{ not json")
    done = gk("install", "claude-code", "--settings", str(settings))
    assert done.returncode != 0
    assert "not valid JSON" in done.stderr
    assert settings.read_text() == "{ not json"


def test_claude_install_wait_gives_a_person_time(where: Path) -> None:
    settings = where / "settings.json"
    assert gk("install", "claude-code", "--settings", str(settings), "--wait").returncode == 0
    (ours,) = json.loads(settings.read_text())["hooks"]["PreToolUse"][0]["hooks"]
    assert "--wait" in ours["command"]
    assert ours["timeout"] >= 600


def test_codex_install_trusts_its_hook_and_uninstalls(where: Path) -> None:
    home = where / "codex"
    home.mkdir()
    (home / "config.toml").write_text('model = "gpt-5.5"\n\n[features]\nx = true\n')
    other = {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-it"}]}
    (home / "hooks.json").write_text(json.dumps({"hooks": {"PreToolUse": [other]}}))
    for _ in range(2):
        assert gk("install", "codex", "--codex-home", str(home)).returncode == 0
    groups = json.loads((home / "hooks.json").read_text())["hooks"]["PreToolUse"]
    assert groups[0] == other and len(groups) == 2
    config = (home / "config.toml").read_text()
    key = f'[hooks.state."{home / "hooks.json"}:pre_tool_use:1:0"]'
    assert config.count(key) == 1
    assert config.startswith('model = "gpt-5.5"\n\n[features]\nx = true\n')
    assert gk("uninstall", "codex", "--codex-home", str(home)).returncode == 0
    assert json.loads((home / "hooks.json").read_text())["hooks"]["PreToolUse"] == [other]
    assert "hooks.state" not in (home / "config.toml").read_text()


def test_opencode_install_writes_the_plugin(where: Path) -> None:
    done = gk("install", "opencode", "--project", str(where))
    assert done.returncode == 0, done.stderr
    plugin = where / ".opencode" / "plugin" / "gatekeeper.js"
    assert plugin.read_text() == PLUGIN.read_text()
    assert gk("uninstall", "opencode", "--project", str(where)).returncode == 0
    assert not plugin.exists()
    assert gk("install", "opencode", "--dir", str(where), "--agent", "x").returncode == 2


def test_installers_leave_other_tools_hooks_alone(where: Path) -> None:
    settings = where / "settings.json"
    net = {"type": "command", "command": "/opt/safety-net/hook.sh"}
    wrapper = {"type": "command", "command": "/usr/local/bin/audit-gatekeeper.hooks-wrapper"}
    settings.write_text(
        json.dumps(
            {
                "hooks": {
                    "PreToolUse": [
                        {"matcher": "Bash", "hooks": [net]},
                        {"matcher": "*", "hooks": [wrapper]},
                    ]
                }
            }
        )
    )
    assert gk("install", "claude-code", "--settings", str(settings)).returncode == 0
    groups = json.loads(settings.read_text())["hooks"]["PreToolUse"]
    # A hook of ours that someone put beside theirs: ours goes, theirs stays.
    groups[0]["hooks"].append(groups.pop()["hooks"][0])
    settings.write_text(json.dumps({"hooks": {"PreToolUse": groups}}))
    assert gk("uninstall", "claude-code", "--settings", str(settings)).returncode == 0
    assert json.loads(settings.read_text())["hooks"]["PreToolUse"] == [
        {"matcher": "Bash", "hooks": [net]},
        {"matcher": "*", "hooks": [wrapper]},
    ]


def test_codex_uninstall_keeps_the_trust_of_later_hooks(where: Path) -> None:
    real = where / "real-codex"
    real.mkdir()
    link = where / "codex-link"
    link.symlink_to(real)
    # Codex canonicalises CODEX_HOME: the trust key must name the real path.
    assert gk("install", "codex", "--codex-home", str(link)).returncode == 0
    hooks_json = real / "hooks.json"
    data = json.loads(hooks_json.read_text())
    later = {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-it"}]}
    data["hooks"]["PreToolUse"].append(later)
    hooks_json.write_text(json.dumps(data))
    config = real / "config.toml"
    config.write_text(
        config.read_text() + f'\n[hooks.state."{hooks_json}:pre_tool_use:1:0"]\nenabled = true\n'
        'trusted_hash = "sha256:theirs"\n'
    )
    assert f'[hooks.state."{hooks_json}:pre_tool_use:0:0"]' in config.read_text()
    assert gk("uninstall", "codex", "--codex-home", str(link)).returncode == 0
    assert json.loads(hooks_json.read_text())["hooks"]["PreToolUse"] == [later]
    text = config.read_text()
    assert f'[hooks.state."{hooks_json}:pre_tool_use:0:0"]\nenabled = true\n' in text
    assert 'trusted_hash = "sha256:theirs"' in text
    assert ":pre_tool_use:1:0" not in text
