"""The real Codex CLI (``codex exec``) behind gatekeeper's PreToolUse hook.

Codex runs in a network namespace of its own against :mod:`tests.e2e.fake_responses` (a
scripted Responses API), with approval policy ``never`` and sandbox ``danger-full-access`` so
that whatever the hook lets through really runs. The scripted model calls ``exec_command``
(Codex's shell tool; its hooks see it as ``Bash``) or ``apply_patch``; what ran is read off the
disk afterwards: the ``probe`` stand-in's log and the files in the work directory.

Codex's own rules for hooks (0.171.0) shape what is asserted here:

* Only ``permissionDecision: "deny"`` with a reason (or exit 2 with a reason on stderr, or the
  legacy ``{"decision": "block", "reason": …}``) blocks a call. ``allow`` without
  ``updatedInput`` and ``ask`` are "unsupported" and the call goes on; so do a hook that times
  out, crashes or cannot be started. Every fail-closed case must therefore be a deny.
* User hooks run only when trusted: ``[hooks.state."<hooks.json path>:pre_tool_use:G:H"]`` with
  the ``trusted_hash`` Codex computes (see :func:`trusted_hash`), else they are skipped silently.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_util import short_dir, subprocess_daemon
from tests.e2e import harness

AGENT = "tester"
MODEL = "gpt-5.5"  # a model Codex knows: it offers apply_patch (unknown models get no patch tool)
HOOK_TIMEOUT = 10  # Codex kills the hook after this many seconds (and then lets the call run)

POLICY = """\
---
permission:
  bash:
    "*": ask
    "probe ok*": allow
    "probe bad*": deny
  edit:
    "*": allow
    "locked/*": deny
  write:
    "*": allow
    "sub/*.log": deny
    "locked/*": deny
---
"""


@functools.cache
def hook_commands() -> set[str]:
    """The ``gatekeeper hook`` subcommands this checkout has (``codex`` arrives later)."""
    out = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "hook", "--help"],
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        name
        for name in ("claude-code", "codex", "install")
        if re.search(rf"^\s+{name}(\s|$)", out, re.MULTILINE)
    }


def trusted_hash(command: str, timeout: int, matcher: str | None) -> str:
    """The ``trusted_hash`` Codex 0.171.0 wants for one PreToolUse command hook.

    Codex hashes a normalized identity of the hook (event label, matcher, the one handler with
    its timeout made explicit and ``async`` false), with object keys sorted and no whitespace.
    """
    handler = {"type": "command", "command": command, "timeout": timeout, "async": False}
    identity: dict[str, Any] = {"event_name": "pre_tool_use", "hooks": [handler]}
    if matcher is not None:
        identity["matcher"] = matcher
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def install_hook(codex_home: Path, sock: Path) -> None:
    """Put gatekeeper's hook in ``codex_home`` (the installer once it exists, else by hand)."""
    if "install" in hook_commands():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gatekeeper",
                "hook",
                "install",
                "codex",
                "--codex-home",
                str(codex_home),
                "--agent",
                AGENT,
                "--socket",
                str(sock),
            ],
            cwd=harness.REPO,
            check=True,
        )
        return
    flavour = "codex" if "codex" in hook_commands() else "claude-code"
    command = f"{sys.executable} -m gatekeeper hook {flavour} --socket {sock} --agent {AGENT}"
    matcher = "*"
    hooks = {
        "hooks": {
            "PreToolUse": [
                {
                    "matcher": matcher,
                    "hooks": [{"type": "command", "command": command, "timeout": HOOK_TIMEOUT}],
                }
            ]
        }
    }
    hooks_json = codex_home / "hooks.json"
    hooks_json.write_text(json.dumps(hooks, indent=2))
    key = f"{hooks_json}:pre_tool_use:0:0"
    with (codex_home / "config.toml").open("a") as f:
        f.write(
            f'\n[hooks.state."{key}"]\nenabled = true\n'
            f'trusted_hash = "{trusted_hash(command, HOOK_TIMEOUT, matcher)}"\n'
        )


@dataclass
class Codex:
    """One ``codex exec`` run and what it left behind."""

    root: Path
    work: Path
    home: Path
    result: harness.Isolated

    @property
    def runs(self) -> list[tuple[str, str]]:
        return harness.probe_runs(self.root / "probe.log")

    def requests(self) -> list[dict[str, Any]]:
        log = self.root / "requests.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def tool_outputs(self) -> list[str]:
        """What Codex told the model each tool call came to (the last request's view)."""
        bodies = [r["body"] for r in self.requests() if r["path"].endswith("/responses")]
        if not bodies:
            return []
        return [
            str(item.get("output"))
            for item in bodies[-1].get("input", [])
            if isinstance(item, dict)
            and item.get("type") in ("function_call_output", "custom_tool_call_output")
        ]

    def explain(self) -> str:
        return (
            f"exit {self.result.returncode}\n--- stdout\n{self.result.stdout[-4000:]}\n"
            f"--- stderr\n{self.result.stderr[-3000:]}\n--- tool outputs\n{self.tool_outputs()}"
        )


def exec_call(cmd: str, **extra: Any) -> dict[str, Any]:
    """A scripted turn: the model runs ``cmd`` with Codex's shell tool (``exec_command``)."""
    # login=false: a login shell would reset PATH from /etc/profile and lose the probe.
    return {"call": {"name": "exec_command", "arguments": {"cmd": cmd, "login": False, **extra}}}


def run_codex(
    tmp: Path, sock: Path, script: list[dict[str, Any]], *, ephemeral: bool = False
) -> Codex:
    """Run ``codex exec`` once, with gatekeeper's hook on ``sock``, playing ``script``
    (``ephemeral``: ``--ephemeral``, a session that keeps no record)."""
    root = tmp / "codex"
    home = root / "home"
    work = root / "work"
    for d in (home, work / "sub", work / "locked"):
        d.mkdir(parents=True, exist_ok=True)
    bin_dir = root / "bin"
    harness.make_probe(bin_dir)
    (root / "script.json").write_text(json.dumps([*script, {"text": "done"}]))
    (home / "config.toml").write_text(
        f'model = "{MODEL}"\n'
        'model_provider = "fake"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n'
        # Without these Codex spends ~5 s at exit trying to reach its telemetry endpoints.
        "check_for_update_on_startup = false\n"
        "\n[analytics]\nenabled = false\n"
        "\n[feedback]\nenabled = false\n"
        "\n[model_providers.fake]\n"
        'name = "fake"\n'
        'base_url = "http://127.0.0.1:1/v1"\n'  # replaced by -c below, with the real port
        'wire_api = "responses"\n'
        'env_key = "GK_FAKE_OPENAI_KEY"\n'
    )
    install_hook(home, sock)
    client = [
        str(harness.cli("codex")),
        "-c",
        'model_providers.fake.base_url="http://127.0.0.1:{port}/v1"',
        "exec",
        "--skip-git-repo-check",
        *(["--ephemeral"] if ephemeral else []),
        "--json",
        "Do what the script says.",
    ]
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root),
        "CODEX_HOME": str(home),
        "GK_FAKE_OPENAI_KEY": "sk-test-not-a-key",
        "GK_PROBE_LOG": str(root / "probe.log"),
        "LANG": "C.UTF-8",
    }
    result = harness.run_isolated(
        client,
        [sys.executable, "-m", "tests.e2e.fake_responses"],
        env=env,
        cwd=work,
        out=root / "out",
        timeout=90,
        server_env={
            "GK_SCRIPT": str(root / "script.json"),
            "GK_REQUEST_LOG": str(root / "requests.jsonl"),
        },
    )
    return Codex(root, work, home, result)


@pytest.fixture
def sock() -> Iterator[Path]:
    d = short_dir()
    yield d / "gk.sock"
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.fixture
def daemon(tmp_path: Path, sock: Path) -> Iterator[Path]:
    """A real daemon with :data:`POLICY`; yields its audit log."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / f"{AGENT}.md").write_text(POLICY)
    audit = tmp_path / "audit" / "audit.jsonl"
    audit.parent.mkdir(mode=0o700)
    with subprocess_daemon(sock, policies, "--audit-log", str(audit), agent=AGENT):
        yield audit


def checks(audit: Path) -> list[dict[str, Any]]:
    """The daemon's decision records."""
    if not audit.exists():
        return []
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "decision"]


@contextlib.contextmanager
def hung_daemon(path: Path) -> Iterator[None]:
    """A Unix socket that accepts connections and never answers."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)
        for conn in held:
            conn.close()


def test_allowed_command_runs(tmp_path: Path, sock: Path, daemon: Path) -> None:
    codex = run_codex(tmp_path, sock, [exec_call("probe ok allowed")])
    assert codex.runs == [(str(codex.work), "ok allowed")], codex.explain()
    decided = [c for c in checks(daemon) if c.get("command") == "probe ok allowed"]
    assert decided, "the hook never asked the daemon"
    assert decided[0]["cwd"] == str(codex.work)
    assert decided[0]["decision"]["decision"] == "allow"


def test_denied_command_never_runs(tmp_path: Path, sock: Path, daemon: Path) -> None:
    codex = run_codex(tmp_path, sock, [exec_call("probe bad denied"), exec_call("probe ok after")])
    assert codex.runs == [(str(codex.work), "ok after")], codex.explain()
    assert any(c.get("command") == "probe bad denied" for c in checks(daemon))
    # The model is told why (the reason names the rule).
    assert any("probe bad*" in out for out in codex.tool_outputs()), codex.explain()


def test_ask_never_runs_unattended(tmp_path: Path, sock: Path, daemon: Path) -> None:
    codex = run_codex(tmp_path, sock, [exec_call("probe maybe"), exec_call("probe ok after")])
    assert any(c.get("command") == "probe maybe" for c in checks(daemon))
    assert codex.runs == [(str(codex.work), "ok after")], codex.explain()


def test_no_daemon_never_runs(tmp_path: Path, sock: Path) -> None:
    assert not sock.exists()
    codex = run_codex(tmp_path, sock, [exec_call("probe ok nodaemon")])
    assert codex.runs == [], codex.explain()


def test_hung_daemon_never_runs(tmp_path: Path, sock: Path) -> None:
    with hung_daemon(sock):
        codex = run_codex(tmp_path, sock, [exec_call("probe ok hung")])
    assert codex.runs == [], codex.explain()


def test_apply_patch_to_denied_path_is_blocked(tmp_path: Path, sock: Path, daemon: Path) -> None:
    patch = "*** Begin Patch\n*** Add File: locked/secret.txt\n+nope\n*** End Patch\n"
    allowed = "*** Begin Patch\n*** Add File: notes.txt\n+fine\n*** End Patch\n"
    codex = run_codex(
        tmp_path,
        sock,
        [
            {"custom": {"name": "apply_patch", "input": patch}},
            {"custom": {"name": "apply_patch", "input": allowed}},
        ],
    )
    assert not (codex.work / "locked" / "secret.txt").exists(), codex.explain()
    # The same tool on an allowed path goes through: the hook blocks by path, not wholesale.
    assert (codex.work / "notes.txt").read_text() == "fine\n", codex.explain()


def test_root_does_not_move_with_cd(tmp_path: Path, sock: Path, daemon: Path) -> None:
    codex = run_codex(
        tmp_path, sock, [exec_call("cd sub && probe ok > x.log"), exec_call("probe ok after")]
    )
    assert not (codex.work / "sub" / "x.log").exists(), codex.explain()
    assert codex.runs == [(str(codex.work), "ok after")], codex.explain()


def test_root_does_not_move_with_workdir(tmp_path: Path, sock: Path, daemon: Path) -> None:
    """The hook takes the project root from the session's transcript (its session_meta),
    not from the payload's cwd, which follows exec_command's workdir."""
    codex = run_codex(tmp_path, sock, [exec_call("probe ok > x.log", workdir="sub")])
    assert not (codex.work / "sub" / "x.log").exists(), codex.explain()
    assert codex.runs == [], codex.explain()


def test_root_does_not_move_with_workdir_in_an_ephemeral_session(
    tmp_path: Path, sock: Path, daemon: Path
) -> None:
    """Without a session record the hook takes its own directory — where Codex starts hooks,
    the session's — as the root, not the payload's cwd."""
    codex = run_codex(
        tmp_path,
        sock,
        [exec_call("probe ok > x.log", workdir="sub"), exec_call("probe ok > y", workdir="locked")],
        ephemeral=True,
    )
    assert not (codex.work / "sub" / "x.log").exists(), codex.explain()
    assert not (codex.work / "locked" / "y").exists(), codex.explain()
    assert codex.runs == [], codex.explain()
