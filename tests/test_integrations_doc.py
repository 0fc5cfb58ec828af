"""The examples in docs/integrations.md run as written, against a real daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.policy import bundled_policy_dir
from tests.daemon_util import short_dir, subprocess_daemon

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "integrations.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[Path, Path]]:
    where = short_dir()
    sock = where / "s.sock"
    with subprocess_daemon(sock, bundled_policy_dir(), agent="default"):
        yield sock, where
    subprocess.run(["rm", "-rf", str(where)], check=False)


def shell(script: str, sock: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GATEKEEPER_SOCKET": str(sock),
        "HOME": str(home),
    }
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_shell_example_runs(daemon: tuple[Path, Path]) -> None:
    sock, home = daemon
    outputs = []
    for script in blocks("sh"):
        result = shell(script, sock, home)
        assert result.returncode in (0, 126), (script, result.stderr)
        outputs.append(result.stdout)
    joined = "\n".join(outputs)
    by_hand = next(o for o in outputs if "hookSpecificOutput" in o)
    assert json.loads(by_hand)["hookSpecificOutput"]["permissionDecision"] == "deny"

    # The Claude Code hook the installer wrote, run the way Claude Code runs it.
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    (group,) = settings["hooks"]["PreToolUse"]
    assert group["matcher"] == "Bash|Edit|MultiEdit|Write|NotebookEdit"
    (entry,) = group["hooks"]
    body = {
        "hook_event_name": "PreToolUse",
        "cwd": str(REPO),
        "tool_name": "Bash",
        "tool_input": {"command": "npm test && git status"},
    }
    result = shell(f"echo {json.dumps(json.dumps(body))} | {entry['command']}", sock, home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["hookSpecificOutput"]
    assert out["permissionDecision"] == "allow"
    assert "gatekeeper (backend-engineer)" in out["permissionDecisionReason"]
    # Codex's hook and its trust entry.
    codex = json.loads((home / ".codex" / "hooks.json").read_text())
    assert "gatekeeper.hooks codex" in codex["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    assert "[hooks.state." in (home / ".codex" / "config.toml").read_text()
    assert "hello from a harness" in joined
    plugin = home / ".config" / "opencode" / "plugin" / "gatekeeper.js"
    assert (
        plugin.read_text()
        == (REPO / "gatekeeper" / "integrations" / "opencode-plugin.js").read_text()
    )
    assert "[allow] echo hello from a harness && pwd" in joined
    assert "[deny] sudo rm -rf /" in joined
    assert "exit status 0" in joined
    assert "[allow] git status" in joined
    assert "[allow] ls -la docs" in joined
    assert "integrations.md" in joined  # ls really ran
