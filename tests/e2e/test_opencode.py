"""The real opencode CLI (pinned in tests/e2e/clis) with gatekeeper's plugin, offline.

Each test runs ``opencode run`` in a network namespace of its own beside a scripted fake
OpenAI-compatible model server (:mod:`tests.e2e.fake_openai`), reached through opencode's
bundled ``@ai-sdk/openai-compatible`` provider. The model asks for tool calls; what really ran
is read off the disk (the ``probe`` stand-in's log, the files written). opencode's own
permissions are all "allow", so only gatekeeper decides.

Offline first run: opencode installs ``@opencode-ai/plugin`` into every config directory it
reads (npm, in the background) and waits for that install before it loads plugins; without a
network the install fails only after npm's retries (over a minute). A config directory whose
``node_modules`` exists and whose ``package.json`` and ``package-lock.json`` both name the
package counts as installed (opencode's "Npm.install" checks exactly that), so
:func:`prepare_config_dir` writes those three; gatekeeper's plugin imports nothing from the
package.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.client import Client
from tests.daemon_util import make_policy_dir, short_dir, subprocess_daemon
from tests.e2e.harness import Isolated, cli, make_probe, probe_runs, require_isolation, run_isolated

OPENCODE_VERSION = "1.18.33"

TESTER = """\
---
permission:
  bash:
    "*": ask
    "probe ok *": allow
    "probe denied *": deny
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
# An opencode agent with a policy of its own.
REVIEWER = """\
---
description: reviews
mode: primary
permission:
  bash:
    "*": deny
    "probe review *": allow
  edit: deny
---
"""


@dataclass
class Setup:
    base: Path
    home: Path
    proj: Path
    sock: Path
    probe_log: Path
    bin: Path


@pytest.fixture
def setup() -> Iterator[Setup]:
    require_isolation()
    cli("opencode")
    base = short_dir()
    home = base / "home"
    proj = base / "proj"
    (proj / "docs").mkdir(parents=True)
    (proj / "secrets").mkdir()
    (proj / "sub").mkdir()
    (base / "elsewhere").mkdir()
    subprocess.run(["git", "init", "-q", str(proj)], check=True)
    config = home / ".config" / "opencode"
    prepare_config_dir(config)
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "hook", "install", "opencode",
         "--dir", str(config / "plugin")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bin_dir = base / "bin"
    make_probe(bin_dir)
    try:
        yield Setup(base, home, proj, base / "s.sock", base / "probe.log", bin_dir)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def prepare_config_dir(config: Path) -> None:
    """Make opencode count ``config`` as having @opencode-ai/plugin installed (see above)."""
    (config / "node_modules").mkdir(parents=True, exist_ok=True)
    deps = {"@opencode-ai/plugin": OPENCODE_VERSION}
    (config / "package.json").write_text(json.dumps({"dependencies": deps}))
    lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": deps}}}
    (config / "package-lock.json").write_text(json.dumps(lock))


@contextlib.contextmanager
def daemon(s: Setup) -> Iterator[Path]:
    policies = make_policy_dir(s.base, TESTER)
    (policies / "reviewer.md").write_text(REVIEWER)
    config = s.base / "config.toml"
    config.write_text("[serve]\napprovers_need_tty = false\n")
    with subprocess_daemon(s.sock, policies, "--config", str(config), "--approval-timeout", "60"):
        yield s.sock


def opencode_config() -> dict[str, Any]:
    model = {"tool_call": True, "limit": {"context": 100000, "output": 4096}}
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake",
                "options": {"baseURL": "http://127.0.0.1:{port}/v1", "apiKey": "none"},
                # A model id with "gpt-" gets apply_patch instead of edit and write.
                "models": {"fake-model": model, "gpt-5-fake": model},
            }
        },
        "model": "fake/fake-model",
        "small_model": "fake/fake-model",
        "autoupdate": False,
        "share": "disabled",
        # opencode's own rules let everything through: only gatekeeper decides.
        "permission": {
            "*": "allow",
            "bash": "allow",
            "edit": "allow",
            "external_directory": "allow",
        },
        "agent": {"reviewer": {"mode": "primary", "description": "reviews"}},
    }


def run_opencode(
    s: Setup,
    script: list[dict[str, Any]],
    *,
    model: str = "fake/fake-model",
    agent: str | None = None,
    socket_path: Path | None = None,
) -> tuple[Isolated, list[dict[str, Any]]]:
    out = s.base / f"run-{time.monotonic_ns()}"
    out.mkdir()
    (out / "script.json").write_text(json.dumps(script))
    env = {
        "HOME": str(s.home),
        "PATH": f"{s.bin}:/usr/local/bin:/usr/bin:/bin",
        "XDG_CONFIG_HOME": str(s.home / ".config"),
        "XDG_DATA_HOME": str(s.home / ".local" / "share"),
        "XDG_CACHE_HOME": str(s.home / ".cache"),
        "XDG_STATE_HOME": str(s.home / ".local" / "state"),
        "OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config()),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "GATEKEEPER_SOCKET": str(socket_path or s.sock),
        "GK_PROBE_LOG": str(s.probe_log),
    }
    argv = [str(cli("opencode")), "run", "--print-logs", "--model", model]
    if agent:
        argv += ["--agent", agent]
    done = run_isolated(
        [*argv, "do the task"],
        [sys.executable, "-m", "tests.e2e.fake_openai"],
        env=env,
        cwd=s.proj,
        out=out,
        timeout=90,
        server_env={
            "GK_SCRIPT": str(out / "script.json"),
            "GK_REQUEST_LOG": str(out / "requests.jsonl"),
        },
    )
    log = out / "requests.jsonl"
    requests = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert done.returncode != 98, "opencode outlived its timeout"
    return done, requests


def bash(command: str, workdir: str | None = None) -> dict[str, Any]:
    args = {"command": command, "description": "run it"}
    if workdir is not None:
        args["workdir"] = workdir
    return {"tool_call": {"name": "bash", "input": args}}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_call": {"name": name, "input": args}}


def tool_results(requests: list[dict[str, Any]]) -> list[str]:
    """The text of every tool result opencode sent back to the model, in order."""
    last: list[dict[str, Any]] = []
    for r in requests:
        body = r.get("body")
        if isinstance(body, dict) and body.get("tools"):
            last = body.get("messages") or []
    return [str(m.get("content")) for m in last if m.get("role") == "tool"]


def runs(s: Setup) -> list[tuple[str, str]]:
    return probe_runs(s.probe_log)


def check_ran(done: Isolated, requests: list[dict[str, Any]], turns: int) -> None:
    """opencode ran every scripted turn and finished with the final text."""
    assert done.returncode == 0, done.stderr[-4000:]
    results = tool_results(requests)
    assert len(results) == turns, (results, done.stderr[-4000:])


# -- tests -------------------------------------------------------------------------------


def test_allowed_calls_run_and_denied_ones_never_do(setup: Setup) -> None:
    s = setup
    with daemon(s):
        done, requests = run_opencode(
            s,
            [
                bash("probe ok first"),
                bash("probe denied second"),
                bash("probe ok third; probe denied fourth"),
                call("write", filePath=str(s.proj / "docs" / "a.md"), content="hello\n"),
                call("write", filePath=str(s.proj / "secrets" / "key"), content="x\n"),
                call("write", filePath="docs/rel.md", content="relative\n"),
                {"text": "finished"},
            ],
        )
    check_ran(done, requests, 6)
    assert runs(s) == [(str(s.proj), "ok first")]
    assert (s.proj / "docs" / "a.md").read_text() == "hello\n"
    assert (s.proj / "docs" / "rel.md").read_text() == "relative\n"
    assert not (s.proj / "secrets" / "key").exists()
    results = tool_results(requests)
    assert "gatekeeper blocked this: deny" in results[1]
    assert "gatekeeper blocked this: deny" in results[2]
    assert "secrets/*" in results[4]
    assert "finished" in done.stdout


def answer_in_order(sock: Path, answers: list[str]) -> Callable[[], list[dict[str, Any]]]:
    """Answer the next len(answers) pending requests in a thread; returns a join function
    giving what was answered."""
    seen: list[dict[str, Any]] = []

    def work() -> None:
        deadline = time.monotonic() + 80
        with Client(sock) as c:
            while len(seen) < len(answers) and time.monotonic() < deadline:
                pending = c.pending()
                if not pending:
                    time.sleep(0.05)
                    continue
                seen.append(pending[0])
                c.answer(pending[0]["request"], answers[len(seen) - 1])

    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def join() -> list[dict[str, Any]]:
        thread.join(90)
        return seen

    return join


def test_an_ask_waits_for_a_human(setup: Setup) -> None:
    s = setup
    with daemon(s):
        join = answer_in_order(s.sock, ["once", "reject"])
        done, requests = run_opencode(
            s, [bash("probe asked approved"), bash("probe asked rejected"), {"text": "finished"}]
        )
        answered = join()
    check_ran(done, requests, 2)
    assert [a["command"] for a in answered] == ["probe asked approved", "probe asked rejected"]
    context = answered[0]["context"]
    assert context["harness"] == "opencode" and context["opencode_agent"] == "build"
    assert context["session"].startswith("ses_") and context["call"]
    assert runs(s) == [(str(s.proj), "asked approved")]
    assert "rejected by a human" in tool_results(requests)[1]


def test_nothing_runs_without_a_daemon(setup: Setup) -> None:
    s = setup
    done, requests = run_opencode(
        s,
        [
            bash("probe ok first"),
            call("write", filePath=str(s.proj / "docs" / "a.md"), content="x"),
            {"text": "finished"},
        ],
        socket_path=s.base / "none.sock",
    )
    check_ran(done, requests, 2)
    assert runs(s) == []
    assert not (s.proj / "docs" / "a.md").exists()
    for text in tool_results(requests):
        assert "gatekeeper: no answer from the daemon" in text


def test_apply_patch_is_decided_file_by_file(setup: Setup) -> None:
    s = setup
    (s.proj / "docs" / "old.md").write_text("a\n")

    def patch(*lines: str) -> dict[str, Any]:
        text = "\n".join(["*** Begin Patch", *lines, "*** End Patch"])
        return call("apply_patch", patchText=text)

    with daemon(s):
        done, requests = run_opencode(
            s,
            [
                patch("*** Add File: docs/p.md", "+p", "*** Add File: secrets/p", "+p"),
                patch("*** Update File: docs/old.md", "*** Move to: secrets/moved.md", "@@",
                      "-a", "+b"),
                patch("*** Add File: docs/q.md", "+q"),
                {"text": "finished"},
            ],
            model="fake/gpt-5-fake",
        )  # fmt: skip
    check_ran(done, requests, 3)
    assert not (s.proj / "docs" / "p.md").exists()
    assert not (s.proj / "secrets" / "p").exists()
    assert (s.proj / "docs" / "old.md").read_text() == "a\n"
    assert not (s.proj / "secrets" / "moved.md").exists()
    assert (s.proj / "docs" / "q.md").read_text() == "q\n"
    results = tool_results(requests)
    assert "gatekeeper blocked this: deny" in results[0]
    assert "gatekeeper blocked this: deny" in results[1]


def test_workdir_relative_runs_outside_is_external(setup: Setup) -> None:
    s = setup
    with daemon(s):
        done, requests = run_opencode(
            s,
            [
                bash("probe ok relative", workdir="sub"),
                bash("probe ok outside", workdir=str(s.base / "elsewhere")),
                bash("probe ok parent", workdir=".."),
                {"text": "finished"},
            ],
        )
    check_ran(done, requests, 3)
    assert runs(s) == [(str(s.proj / "sub"), "ok relative")]
    results = tool_results(requests)
    for text in results[1:]:
        assert "gatekeeper blocked this: deny" in text


def test_the_opencode_agent_picks_its_policy(setup: Setup) -> None:
    s = setup
    script = [bash("probe review one"), bash("probe ok two"), {"text": "finished"}]
    with daemon(s):
        done, requests = run_opencode(s, script, agent="reviewer")
        check_ran(done, requests, 2)
        assert runs(s) == [(str(s.proj), "review one")]
        assert "reviewer.md" in tool_results(requests)[1]
        # The same calls by opencode's build agent (no policy of its own): the default's.
        os.unlink(s.probe_log)
        join = answer_in_order(s.sock, ["reject"])
        done, requests = run_opencode(s, script)
        answered = join()
    check_ran(done, requests, 2)
    assert runs(s) == [(str(s.proj), "ok two")]
    assert [(a["agent"], a["command"]) for a in answered] == [("tester", "probe review one")]
