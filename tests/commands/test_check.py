from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.cli import main
from tests.conftest import EXAMPLE

WriteAgent = Callable[..., Path]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["check", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_acceptance_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run_json(capsys, "--policy", str(EXAMPLE), "npm test && rm -rf build")
    assert code == 3
    assert body["decision"] == "ask"
    parts = body["parts"]
    assert isinstance(parts, list)
    rm = next(p for p in parts if p["subject"] == "rm -rf build")
    assert rm["decision"] == "ask"
    assert rm["rule"] == {"pattern": "*", "action": "ask", "source": "backend-engineer.md:21"}
    assert "rm -rf build" in str(body["reason"])


@pytest.mark.parametrize(
    ("command", "code", "decision"),
    [("npm ci && npm test", 0, "allow"), ("git status; rm -rf ~", 3, "ask")],
)
def test_exit_status_tells_decisions_apart(
    capsys: pytest.CaptureFixture[str], command: str, code: int, decision: str
) -> None:
    got, body = run_json(capsys, "--policy", str(EXAMPLE), command)
    assert (got, body["decision"]) == (code, decision)


def test_deny_exit_status(capsys: pytest.CaptureFixture[str], write_agent: WriteAgent) -> None:
    path = write_agent('permission:\n  bash:\n    "*": ask\n    "rm *": deny\n')
    code, body = run_json(capsys, "--policy", str(path), "echo $(rm -rf x)")
    assert (code, body["decision"]) == (4, "deny")


def test_path_check_uses_write_then_edit_rules(
    capsys: pytest.CaptureFixture[str], write_agent: WriteAgent, tmp_path: Path
) -> None:
    path = write_agent('permission:\n  edit:\n    "*": ask\n    "src/*": allow\n')
    args = ["--policy", str(path), "--cwd", str(tmp_path)]
    code, body = run_json(capsys, *args, "--permission", "write", "--path", "src/a.py")
    assert (code, body["decision"]) == (0, "allow")
    code, body = run_json(capsys, *args, "--permission", "edit", "--path", "../outside.py")
    assert body["decision"] == "ask"
    parts = body["parts"]
    assert isinstance(parts, list)
    perms = {p["permission"] for p in parts}
    assert perms == {"edit", "external_directory"}


def test_human_output_makes_invisible_characters_visible(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["check", "--policy", str(EXAMPLE), "npm test \u202e; ls"])
    out = capsys.readouterr().out
    assert code == 3
    assert "\\u202e" in out
    assert "\u202e" not in out


def test_stdin_raw_bytes_invalid_utf8_is_bad_input(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "check", "--policy", str(EXAMPLE), "-"],
        input=b"npm test \xff\xfe",
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 1
    assert b"bad input" in proc.stderr
    assert b"UTF-8" in proc.stderr


def test_stdin_nul_byte_is_bad_input() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "check", "--policy", str(EXAMPLE), "-"],
        input=b"npm test\x00; rm -rf /",
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 1
    assert b"NUL" in proc.stderr


def test_stdin_command_is_decided(capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "check", "--json", "--policy", str(EXAMPLE), "-"],
        input=b"npm ci\nnpm test\n",
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decision"] == "allow"


def test_broken_policy_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], write_agent: WriteAgent
) -> None:
    path = write_agent('permission:\n  bash:\n    "*": alow\n')
    code = main(["check", "--policy", str(path), "ls"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "agent.md:4" in err and "alow" in err and "did you mean 'allow'" in err


def test_unknown_agent_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["check", "--policy-dir", str(EXAMPLE.parent), "--agent", "nobody", "ls"])
    assert code == 1
    assert "no agent named 'nobody'" in capsys.readouterr().err


def test_default_agent_from_bundled_dir(capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run_json(capsys, "sudo ls")
    assert (code, body["agent"], body["decision"]) == (4, "default", "deny")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check"])
    assert exc.value.code == 2


def test_lint_command_exit_status(
    capsys: pytest.CaptureFixture[str], write_agent: WriteAgent
) -> None:
    good = write_agent('permission:\n  bash:\n    "*": ask\n    "ls *": allow\n', name="good")
    bad = write_agent('permission:\n  bash:\n    "ls *": allow\n    "*": ask\n', name="bad")
    assert main(["policy", "lint", str(good)]) == 0
    assert main(["policy", "lint", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad.md:4: error" in out
    assert main(["policy", "lint", "--strict", str(EXAMPLE)]) == 1


def test_explain_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", str(EXAMPLE)]) == 0
    assert "git push --force*" in capsys.readouterr().out


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--version"], capture_output=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"gatekeeper ")
