"""opencode's plugin, run in node against a real daemon: the hooks called the way opencode
calls them (``chat.message`` when a prompt starts, ``tool.execute.before`` before every tool
call), and what the daemon made of each call read back from it. The real opencode CLI drives
the same file in tests/e2e/test_opencode.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.client import Client
from tests.daemon_util import make_policy_dir, short_dir, subprocess_daemon

PLUGIN = Path(__file__).resolve().parents[2] / "gatekeeper" / "integrations" / "opencode-plugin.js"

TESTER = """\
---
permission:
  bash:
    "*": ask
    "echo *": allow
    "pwd": allow
    "rm *": deny
  edit:
    "*": ask
    "docs/*": allow
    "secrets/*": deny
  write:
    "*": ask
    "docs/*": allow
    "secrets/*": deny
  external_directory:
    "*": deny
---
"""
STRICT = """\
---
permission:
  bash:
    "*": deny
  edit:
    "*": deny
---
"""

# Calls each hook the way opencode does and prints one JSON line per call.
DRIVER = """\
import fs from "node:fs"
const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"))
const mod = await import(spec.plugin)
const ctx = { directory: spec.directory, worktree: spec.worktree }
if (spec.messages !== null) {
  const messages = async ({ path }) => ({ data: spec.messages[path.id] ?? [] })
  ctx.client = { session: { messages } }
}
const exported = Object.entries(mod).map(([name, value]) => [name, typeof value])
const hooks = await mod.GatekeeperPlugin(ctx)
const kinds = Object.entries(hooks).map(([name, value]) => [name, typeof value])
console.log(JSON.stringify({ exported, hooks: kinds }))
for (const call of spec.calls) {
  try {
    await hooks[call.hook](call.input, call.output)
    console.log(JSON.stringify({ ok: true }))
  } catch (err) {
    console.log(JSON.stringify({ blocked: err.message }))
  }
}
"""


def node() -> str:
    path = shutil.which("node")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing in CI")
        pytest.skip("node is not installed")
    return path


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    (d / "proj").mkdir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture
def daemon(where: Path) -> Iterator[Path]:
    sock = where / "s.sock"
    config = where / "config.toml"
    # The test process answers approvals itself and has no terminal in CI.
    config.write_text("[serve]\napprovers_need_tty = false\n")
    policies = make_policy_dir(where, TESTER)
    (policies / "strict.md").write_text(STRICT)
    with subprocess_daemon(sock, policies, "--config", str(config), "--approval-timeout", "30"):
        yield sock


def message(agent: str, session: str = "s1") -> dict[str, Any]:
    """opencode's chat.message call for a new user message in ``session``."""
    return {
        "hook": "chat.message",
        "input": {"sessionID": session, "messageID": "m1"},
        "output": {"message": {"role": "user", "sessionID": session, "agent": agent}, "parts": []},
    }


def tool(name: str, args: dict[str, Any], session: str = "s1", call: str = "c1") -> dict[str, Any]:
    """opencode's tool.execute.before call for one tool call."""
    return {
        "hook": "tool.execute.before",
        "input": {"tool": name, "sessionID": session, "callID": call},
        "output": {"args": args},
    }


def start(
    where: Path,
    sock: Path,
    *calls: dict[str, Any],
    directory: Path | None = None,
    worktree: str | None = "/",
    messages: dict[str, list[dict[str, Any]]] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    plugin = where / "gatekeeper.mjs"
    plugin.write_bytes(PLUGIN.read_bytes())
    driver = where / "driver.mjs"
    driver.write_text(DRIVER)
    spec = where / f"spec-{time.monotonic_ns()}.json"
    spec.write_text(
        json.dumps(
            {
                "plugin": plugin.as_uri(),
                "directory": str(directory or where / "proj"),
                "worktree": worktree,
                "messages": messages,
                "calls": list(calls),
            }
        )
    )
    base = {k: v for k, v in os.environ.items() if k != "GATEKEEPER_AGENT"}
    return subprocess.Popen(
        [node(), str(driver), str(spec)],
        env={**base, "GATEKEEPER_SOCKET": str(sock), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    first, *rest = (json.loads(line) for line in out.splitlines())
    return first, rest


def outcomes(where: Path, sock: Path, *calls: dict[str, Any], **kw: Any) -> list[str]:
    """ "ok" or the block message of every tool call (chat.message calls left out)."""
    _, results = finish(start(where, sock, *calls, **kw))
    return [
        "ok" if r.get("ok") else str(r["blocked"])
        for call, r in zip(calls, results, strict=True)
        if call["hook"] == "tool.execute.before"
    ]


def wait_pending(sock: Path) -> list[dict[str, Any]]:
    with Client(sock) as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = c.pending()
            if pending:
                return pending
            time.sleep(0.05)
    raise AssertionError("nothing became pending")


def answer(sock: Path, request: str, how: str, message: str | None = None) -> None:
    with Client(sock) as c:
        c.answer(request, how, message=message)


ADD = "*** Add File: "
UPDATE = "*** Update File: "


def patch(*lines: str) -> dict[str, Any]:
    return {"patchText": "\n".join(["*** Begin Patch", *lines, "*** End Patch"])}


# -- the module ---------------------------------------------------------------------------


def test_the_module_exports_one_plugin_and_it_returns_its_hooks(where: Path) -> None:
    # opencode calls every export as a plugin and every hook object's hooks by name: one
    # export, a function, returning an object of functions (a helper export returning
    # nothing once broke every `opencode run`).
    first, _ = finish(start(where, where / "none.sock"))
    assert first["exported"] == [["GatekeeperPlugin", "function"]]
    assert first["hooks"] == [["chat.message", "function"], ["tool.execute.before", "function"]]


# -- decisions ----------------------------------------------------------------------------


def test_allows_denies_and_leaves_other_tools_alone(daemon: Path, where: Path) -> None:
    got = outcomes(
        where,
        daemon,
        message("tester"),
        tool("bash", {"command": "echo hi", "description": "say hi"}),
        tool("bash", {"command": "echo `rm -rf x`"}),
        tool("edit", {"filePath": "docs/a.md", "oldString": "a", "newString": "b"}),
        tool("edit", {"filePath": str(where / "proj" / "secrets" / "k")}),
        tool("write", {"filePath": str(where / "proj" / "docs" / "n.md"), "content": "x"}),
        tool("write", {"filePath": "secrets/n", "content": "x"}),
        tool("multiedit", {"filePath": "secrets/m", "edits": []}),
        tool("read", {"filePath": "secrets/k"}),
        tool("webfetch", {"url": "http://example.com"}),
    )
    assert got[0] == "ok"
    assert got[1].startswith("gatekeeper blocked this: deny") and "rm -rf x" in got[1]
    assert got[2] == "ok"
    assert got[3].startswith("gatekeeper blocked this: deny") and "secrets/*" in got[3]
    assert got[4] == "ok"
    assert got[5].startswith("gatekeeper blocked this: deny") and "secrets/*" in got[5]
    assert got[6].startswith("gatekeeper blocked this: deny")
    assert got[7:] == ["ok", "ok"]


def test_bad_calls_are_blocked(daemon: Path, where: Path) -> None:
    got = outcomes(
        where,
        daemon,
        message("tester"),
        tool("bash", {"description": "no command"}),
        tool("bash", {"command": "echo hi", "workdir": 7}),
        tool("edit", {"oldString": "a"}),
        tool("write", {"filePath": "", "content": "x"}),
        tool("apply_patch", {}),
        tool("bash", {"command": "echo \0"}),
    )
    for text in got:
        assert text.startswith("gatekeeper: ") and text.endswith("not running it unchecked")
    assert "bad_request" in got[-1]


def test_an_ask_waits_for_a_human_who_sees_the_context(daemon: Path, where: Path) -> None:
    proc = start(
        where, daemon, message("tester", "ses_1"), tool("bash", {"command": "touch a"}, "ses_1")
    )
    (pending,) = wait_pending(daemon)
    assert pending["command"] == "touch a"
    assert pending["agent"] == "tester"
    assert pending["cwd"] == str(where / "proj")
    assert pending["context"] == {
        "harness": "opencode",
        "tool": "bash",
        "session": "ses_1",
        "call": "c1",
        "opencode_agent": "tester",
    }
    answer(daemon, pending["request"], "once")
    assert finish(proc)[1] == [{"ok": True}, {"ok": True}]

    proc = start(where, daemon, message("tester"), tool("bash", {"command": "touch b"}))
    (pending,) = wait_pending(daemon)
    answer(daemon, pending["request"], "reject", "not in the repo root")
    (_, result) = finish(proc)[1]
    assert result["blocked"].startswith("gatekeeper blocked this: rejected by a human")
    assert result["blocked"].endswith("not in the repo root")


def test_no_daemon_blocks(where: Path) -> None:
    got = outcomes(
        where,
        where / "none.sock",
        message("tester"),
        tool("bash", {"command": "echo hi"}),
        tool("write", {"filePath": "docs/a", "content": ""}),
    )
    for text in got:
        assert text.startswith(f"gatekeeper: no answer from the daemon at {where / 'none.sock'}")


def test_a_daemon_that_hangs_up_blocks(where: Path) -> None:
    path = where / "mute.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def hang_up() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        (text,) = outcomes(where, path, message("tester"), tool("bash", {"command": "echo hi"}))
        assert "the daemon closed the connection" in text
        (text,) = outcomes(where, path, message("tester"), tool("edit", {"filePath": "docs/x"}))
        assert "the daemon closed the connection" in text
    finally:
        thread.join(30)
        server.close()


def test_a_daemon_that_never_answers_blocks(where: Path) -> None:
    path = where / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = server.accept()
        held.append(conn)  # read nothing, answer nothing, never close

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        (text,) = outcomes(
            where,
            path,
            message("tester"),
            tool("bash", {"command": "echo hi"}),
            env={"GATEKEEPER_ANSWER_TIMEOUT": "1"},
        )
        assert "did not answer within 1 s" in text
    finally:
        thread.join(30)
        for c in held:
            c.close()
        server.close()


# -- apply_patch ----------------------------------------------------------------------------


def test_apply_patch_decides_every_file(daemon: Path, where: Path) -> None:
    heredoc = patch(f"{ADD}secrets/h")["patchText"]
    got = outcomes(
        where,
        daemon,
        message("tester"),
        # Each is blocked by one file among allowed ones.
        tool("apply_patch", patch(f"{ADD}docs/new.md", "+hi", f"{ADD}secrets/k", "+x")),
        tool("apply_patch", patch(f"{UPDATE}docs/a.md", "*** Move to: secrets/a.md", "-a", "+b")),
        tool("apply_patch", patch("*** Delete File: secrets/old")),
        tool("apply_patch", patch(f"{ADD}{where}/elsewhere.txt", "+x")),
        # All allowed (an absolute path inside the project too), and the older "patch" tool.
        tool("apply_patch", patch(f"{ADD}docs/x.md", "+x", f"{UPDATE}{where}/proj/docs/y.md")),
        tool("patch", patch("*** Delete File: docs/z.md")),
        # Wrapped in a heredoc, as models sometimes send it.
        tool("apply_patch", {"patchText": f"cat <<'EOF'\n{heredoc}\nEOF"}),
        # Nothing to decide is not a patch to let through.
        tool("apply_patch", patch("just text")),
    )  # fmt: skip
    for text in got[:3]:
        assert text.startswith("gatekeeper blocked this: deny") and "secrets/*" in text, text
    assert got[3].startswith("gatekeeper blocked this: deny")
    assert "external_directory" in got[3] or str(where) in got[3]
    assert got[4:6] == ["ok", "ok"]
    assert got[6].startswith("gatekeeper blocked this: deny") and "secrets/" in got[6]
    assert got[7].startswith("gatekeeper: a apply_patch call that names no file")


def test_apply_patch_asks_only_about_the_files_that_ask(daemon: Path, where: Path) -> None:
    proc = start(
        where,
        daemon,
        message("tester"),
        tool("apply_patch", patch(f"{ADD}docs/ok.md", "+x", f"{ADD}notes.md", "+y")),
    )  # fmt: skip
    (pending,) = wait_pending(daemon)
    assert pending["command"] == str(where / "proj" / "notes.md")
    assert pending["permission"] == "write"
    answer(daemon, pending["request"], "once")
    assert finish(proc)[1] == [{"ok": True}, {"ok": True}]


# -- where: root and cwd ----------------------------------------------------------------------


def test_bash_workdir_is_the_cwd_and_the_project_is_the_root(daemon: Path, where: Path) -> None:
    (where / "proj" / "sub").mkdir()
    got = outcomes(
        where,
        daemon,
        message("tester"),
        tool("bash", {"command": "pwd", "workdir": "sub"}),
        tool("bash", {"command": "pwd", "workdir": str(where / "proj" / "sub")}),
        tool("bash", {"command": "pwd", "workdir": str(where)}),
        tool("bash", {"command": "echo hi", "workdir": ".."}),
    )
    assert got[:2] == ["ok", "ok"]
    # Starting outside the project is external_directory, denied by this policy.
    for text in got[2:]:
        assert text.startswith("gatekeeper blocked this: deny"), text
        assert "external_directory" in text or str(where) in text


def test_the_root_is_the_worktree_unless_it_is_slash(daemon: Path, where: Path) -> None:
    sub = where / "proj" / "pkg"
    sub.mkdir()
    # opencode run in a subdirectory of a repository: rules are relative to the top.
    got = outcomes(
        where,
        daemon,
        message("tester"),
        tool("edit", {"filePath": "../docs/a.md"}),
        tool("write", {"filePath": "../secrets/k", "content": ""}),
        tool("bash", {"command": "pwd", "workdir": ".."}),
        directory=sub,
        worktree=str(where / "proj"),
    )
    assert got[0] == "ok"
    assert got[1].startswith("gatekeeper blocked this: deny") and "secrets/*" in got[1]
    assert got[2] == "ok"
    # No repository: opencode's worktree is "/", and the root is the directory it runs in.
    got = outcomes(
        where,
        daemon,
        message("tester"),
        tool("edit", {"filePath": "../docs/a.md"}),
        tool("bash", {"command": "pwd", "workdir": ".."}),
        directory=sub,
        worktree="/",
    )
    for text in got:
        assert text.startswith("gatekeeper blocked this: deny"), text
        assert "external_directory" in text or "secrets/*" not in text


# -- which policy ---------------------------------------------------------------------------


def test_each_session_is_decided_by_its_opencode_agent(daemon: Path, where: Path) -> None:
    got = outcomes(
        where,
        daemon,
        message("strict", "a"),
        message("tester", "b"),
        tool("bash", {"command": "echo hi"}, "a"),
        tool("bash", {"command": "echo hi"}, "b"),
        tool("write", {"filePath": "docs/x", "content": ""}, "a"),
        tool("write", {"filePath": "docs/x", "content": ""}, "b"),
        # The agent switched in session b.
        message("strict", "b"),
        tool("bash", {"command": "echo hi"}, "b"),
    )
    assert got[0].startswith("gatekeeper blocked this: deny") and "strict.md" in got[0]
    assert got[1] == "ok"
    assert got[2].startswith("gatekeeper blocked this: deny")
    assert got[3] == "ok"
    assert got[4].startswith("gatekeeper blocked this: deny")


def test_an_opencode_agent_without_a_policy_gets_the_default(daemon: Path, where: Path) -> None:
    proc = start(
        where,
        daemon,
        message("build"),
        tool("bash", {"command": "echo hi"}),
        tool("bash", {"command": "rm -rf x"}),
        tool("bash", {"command": "touch y"}),
    )
    (pending,) = wait_pending(daemon)
    assert pending["agent"] == "tester"
    assert pending["context"]["opencode_agent"] == "build"
    answer(daemon, pending["request"], "reject")
    _, results = finish(proc)
    assert results[1] == {"ok": True}
    assert results[2]["blocked"].startswith("gatekeeper blocked this: deny")
    assert results[3]["blocked"].startswith("gatekeeper blocked this: rejected by a human")


def test_no_fallback_when_the_policies_did_not_load(daemon: Path, where: Path) -> None:
    # build.md is broken: the daemon keeps what it had and says so; the plugin cannot tell
    # whether build had a policy, so it blocks rather than use the default.
    (where / "policies" / "build.md").write_text("---\npermission:\n  bash: alow\n---\n")
    with Client(daemon) as c:
        with pytest.raises(Exception, match="alow"):
            c.reload()
        assert c.status()["reload_error"]
    (text,) = outcomes(where, daemon, message("build"), tool("bash", {"command": "echo hi"}))
    assert text.startswith("gatekeeper: no policy for opencode agent build")
    # A session whose agent has a policy is unaffected.
    (text,) = outcomes(where, daemon, message("tester"), tool("bash", {"command": "echo hi"}))
    assert text == "ok"


def test_gatekeeper_agent_overrides_opencode(daemon: Path, where: Path) -> None:
    got = outcomes(
        where,
        daemon,
        message("tester"),
        tool("bash", {"command": "echo hi"}),
        env={"GATEKEEPER_AGENT": "strict"},
    )
    assert got[0].startswith("gatekeeper blocked this: deny") and "strict.md" in got[0]
    # A name the operator chose that has no policy is an error, not the default.
    (text,) = outcomes(
        where,
        daemon,
        message("tester"),
        tool("bash", {"command": "echo hi"}),
        env={"GATEKEEPER_AGENT": "nobody"},
    )
    assert text.startswith("gatekeeper: the daemon refused the check (unknown_agent")


def test_a_session_never_seen_is_looked_up_or_blocked(daemon: Path, where: Path) -> None:
    # No chat.message for the session: the agent of its last user message, from opencode.
    got = outcomes(
        where,
        daemon,
        tool("bash", {"command": "echo hi"}, "a"),
        tool("bash", {"command": "echo hi"}, "b"),
        tool("bash", {"command": "echo hi"}, "c"),
        messages={
            "a": [
                {"info": {"role": "user", "agent": "tester"}},
                {"info": {"role": "assistant", "agent": "tester"}},
                {"info": {"role": "user", "agent": "strict"}},
            ],
            "b": [{"info": {"role": "user", "agent": "tester"}}],
            "c": [{"info": {"role": "assistant", "agent": "tester"}}],
        },
    )
    assert got[0].startswith("gatekeeper blocked this: deny") and "strict.md" in got[0]
    assert got[1] == "ok"
    assert got[2].startswith("gatekeeper: cannot tell which opencode agent runs this session")
    # Without opencode's client at all.
    (text,) = outcomes(where, daemon, tool("bash", {"command": "echo hi"}))
    assert text.startswith("gatekeeper: cannot tell which opencode agent runs this session")
