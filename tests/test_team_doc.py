"""docs/team.md, run as written: the agent file, CI's lint and test (text and SARIF),
pre-commit, the developer's daemon on the team's files with records to a collector, the hook
installers, and the review commands — in the page's order, in a scratch home."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.client import Client
from tests.daemon_util import short_dir, wait_for_socket

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "team.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_team_page_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is needed (the policy repository)")
    home = tmp_path / "home"
    repo = home / "src" / "policies"
    (repo / ".opencode" / "agent").mkdir(parents=True)
    sock = short_dir() / "gk.sock"
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(home),
        "GATEKEEPER_SOCKET": str(sock),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit"),
        "LANG": "C.UTF-8",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    scripts = iter(blocks("sh"))

    # 1. The agent file.
    (agent,) = blocks("markdown")
    first, _, body = agent.partition("\n")
    assert first == "<!-- .opencode/agent/reviewer.md -->"
    (repo / ".opencode" / "agent" / "reviewer.md").write_text(body, encoding="utf-8")
    assert sh("git init -q && git add -A && git commit -qm agents", repo, env).returncode == 0

    # 2. CI: lint and test pass; SARIF comes out valid, naming the file.
    done = sh(next(scripts), repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    done = sh(next(scripts), repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    sarif = json.loads((repo / "gatekeeper.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    # …and the same lint fails a file with a rule that can never win.
    broken = repo / ".opencode" / "agent" / "broken.md"
    broken.write_text(
        '---\npermission:\n  bash:\n    "git status*": allow\n    "*": ask\n---\n',
        encoding="utf-8",
    )
    failing = sh("gatekeeper policy lint --strict .opencode/agent/*.md", repo, env)
    assert failing.returncode == 1, failing.stdout
    assert "broken.md:4" in failing.stdout
    broken.unlink()

    # 3. pre-commit with the page's config.
    config = next(b for b in blocks("yaml") if b.startswith("# .pre-commit-config.yaml"))
    (repo / ".pre-commit-config.yaml").write_text(config, encoding="utf-8")
    sh("git add -A && git commit -qm pre-commit", repo, env)
    done = sh(next(scripts), repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gatekeeper policy lint" in done.stdout and "Passed" in done.stdout

    # 4. The developer's daemon, on the team's files, records to a collector (a UDP socket).
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(20)
    (toml,) = blocks("toml")
    toml = toml.replace("udp://127.0.0.1:5514", f"udp://127.0.0.1:{collector.getsockname()[1]}")
    (home / ".config" / "gatekeeper").mkdir(parents=True)
    (home / ".config" / "gatekeeper" / "config.toml").write_text(toml, encoding="utf-8")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "serve"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_socket(sock, daemon)
        with Client(sock) as c:
            d = c.check("git push origin main", cwd=str(repo))
            assert (d["decision"], d["agent"]) == ("deny", "reviewer")
        datagram = collector.recv(65536).decode()
        while "git push origin main" not in datagram:  # the daemon's start record comes first
            datagram = collector.recv(65536).decode()
        assert datagram.startswith("<132>1 ")  # RFC 5424; local0 (16) * 8 + warning (4)
        assert " gatekeeper " in datagram and 'agent="reviewer"' in datagram

        # The hooks, installed into the developer's harnesses.
        done = sh(next(scripts), repo, env)
        assert done.returncode == 0, done.stderr
        assert (home / ".claude" / "settings.json").exists()
        assert (home / ".codex" / "hooks.json").exists()
        assert (home / ".config" / "opencode" / "plugin" / "gatekeeper.js").exists()

        # 5. The review commands.
        done = sh(next(scripts), repo, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "audit sink syslog udp://127.0.0.1" in done.stdout, done.stdout
        assert ": ok; sent " in done.stdout, done.stdout
        assert "git push origin main" in done.stdout
    finally:
        daemon.terminate()
        daemon.wait(15)
        assert daemon.stdout is not None
        daemon.stdout.close()
        collector.close()
    assert next(scripts, None) is None  # every command on the page ran
