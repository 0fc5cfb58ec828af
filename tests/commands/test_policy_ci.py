"""``gatekeeper policy lint|test|explain`` for CI: exit codes, JSON, SARIF, pre-commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.cli import main

REPO = Path(__file__).resolve().parents[2]
# SARIF 2.1.0's JSON schema (the final 2.1.0 "rtm.5" schema, as published on schemastore),
# vendored from the npm package @microsoft/jest-sarif 1.0.0-beta.0 (MIT),
# lib/schemas/sarif-2.1.0-rtm.5.json; the OASIS original is
# https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json
SARIF_SCHEMA = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"

GOOD = """---
permission:
  bash:
    "*": ask
    "git status": allow
gatekeeper:
  tests:
    - { command: "git status", expect: allow }
---
"""
FAILING_TEST = """---
permission:
  bash:
    "*": ask
    "rm *": deny
gatekeeper:
  tests:
    - { command: "rm -rf x", expect: allow }
---
"""
SHADOWED = """---
permission:
  bash:
    "git push": deny
    "git *": allow
---
"""


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().out


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()
    d = tmp_path / ".opencode" / "agent"
    d.mkdir(parents=True)
    (d / "good.md").write_text(GOOD, encoding="utf-8")
    (d / "failing.md").write_text(FAILING_TEST, encoding="utf-8")
    (d / "shadowed.md").write_text(SHADOWED, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return d


def test_exit_codes(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(files / "good.md")
    assert _run(["policy", "lint", good], capsys)[0] == 0
    assert _run(["policy", "test", good], capsys)[0] == 0
    code, out = _run(["policy", "lint", str(files / "shadowed.md")], capsys)
    assert code == 1
    assert "can never win" in out
    # test runs only the tests: the shadowed rule is not its business
    code, out = _run(["policy", "test", str(files / "shadowed.md")], capsys)
    assert code == 0
    assert "0 test(s)" in out
    assert _run(["policy", "test", "--strict", str(files / "shadowed.md")], capsys)[0] == 1
    code, out = _run(["policy", "test", str(files / "failing.md"), good], capsys)
    assert code == 1
    assert "failing.md:8: error: test failed" in out
    assert "2 test(s): 1 passed, 1 failed" in out
    code, out = _run(["policy", "lint", good, "missing.md"], capsys)
    assert code == 2
    assert "missing.md: error: cannot read" in out


def test_usage_is_2(files: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["policy", "lint"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["policy", "test", "--format", "xml", "a.md"])
    assert exc.value.code == 2


def test_json_and_alias(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = str(files / "failing.md")
    code, out = _run(["policy", "lint", "--json", f], capsys)
    code2, out2 = _run(["policy", "lint", "--format", "json", f], capsys)
    assert (code, out) == (code2, out2)
    records = [json.loads(line) for line in out.splitlines()]
    assert {"level", "source", "message", "rule"} <= set(records[0])
    assert any(r["rule"] == "test-failed" for r in records)


def test_sarif_is_valid_and_points_at_the_rule(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    broken = files / "broken.md"
    broken.write_text("---\npermission:\n  bash: alow\n---\n", encoding="utf-8")
    args = ["policy", "lint", "--format", "sarif"]
    code, out = _run([*args, *(str(p) for p in sorted(files.glob("*.md"))), "gone.md"], capsys)
    assert code == 2
    log = json.loads(out)
    jsonschema.Draft4Validator(schema).validate(log)
    run = log["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(ids) == len(set(ids))
    assert all(r["helpUri"].startswith("docs/") for r in run["tool"]["driver"]["rules"])
    by_rule = {r["ruleId"]: r for r in run["results"]}
    shadow = by_rule["shadowed-rule"]
    assert shadow["level"] == "error"
    loc = shadow["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == ".opencode/agent/shadowed.md"
    assert loc["region"]["startLine"] == 4  # the line of "git push": deny
    assert by_rule["load-error"]["locations"][0]["physicalLocation"]["region"]["startLine"] == 3
    assert by_rule["unreadable"]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "gone.md",
        "uriBaseId": "%SRCROOT%",
    }
    assert by_rule["risky-allow"]["level"] == "warning"
    # a clean file: a valid log with no results
    code, out = _run([*args, str(files / "good.md")], capsys)
    assert code == 0
    jsonschema.Draft4Validator(schema).validate(json.loads(out))
    assert json.loads(out)["runs"][0]["results"] == []


def test_explain_agent_names_source_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    (proj / ".opencode" / "agent").mkdir(parents=True)
    (proj / "opencode.json").write_text(
        '{\n  "permission": {\n    "bash": {"*": "ask", "npm test": "allow"}\n  }\n}\n',
        encoding="utf-8",
    )
    (proj / ".opencode" / "agent" / "dev.md").write_text(
        "---\npermission:\n  bash:\n    'rm *': deny\n---\n", encoding="utf-8"
    )
    args = ["policy", "explain", "--agent", "dev", "--project", str(proj)]
    code, out = _run([*args, "npm test && rm -rf x"], capsys)
    assert code == 0
    assert "bash 'npm test': allow — rule \"npm test\" → allow (opencode.json:3)" in out
    assert "bash 'rm -rf x': deny — rule \"rm *\" → deny (.opencode/agent/dev.md:4)" in out
    assert "decision for 'npm test && rm -rf x': deny" in out
    code, out = _run([*args, "--json", "ls"], capsys)
    data = json.loads(out)
    assert [r["source"] for r in data["rules"]] == [
        "opencode.json:3",
        "opencode.json:3",
        ".opencode/agent/dev.md:4",
    ]
    assert data["decision"]["decision"] == "ask"
    assert main([*args[:3], "nobody", "--project", str(proj)]) == 1


# --------------------------------------------------------------------------------------------
# The real pre-commit, against a scratch repository


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _snapshot(dest: Path) -> str:
    """This working tree (tracked and new files, as they are now) committed into a new repo:
    pre-commit needs a repository and a rev, and the tree may hold uncommitted work."""
    listed = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    dest.mkdir()
    for name in listed.split("\0"):
        src = REPO / name
        if not name or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "snapshot")
    return _git(dest, "rev-parse", "HEAD")


def test_pre_commit_hooks_with_the_real_tool(tmp_path: Path) -> None:
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (pip install -e '.[dev]')")
    rev = _snapshot(tmp_path / "gatekeeper")
    work = tmp_path / "work"
    (work / ".opencode" / "agent").mkdir(parents=True)
    (work / "docs").mkdir()
    _git(work, "init", "-q")
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {tmp_path / 'gatekeeper'}\n    rev: {rev}\n    hooks:\n"
        "      - id: gatekeeper-policy-lint\n      - id: gatekeeper-policy-test\n",
        encoding="utf-8",
    )
    (work / ".opencode" / "agent" / "good.md").write_text(GOOD, encoding="utf-8")
    (work / "docs" / "notes.md").write_text("not an agent file\n", encoding="utf-8")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}

    def run() -> subprocess.CompletedProcess[str]:
        _git(work, "add", "-A")
        return subprocess.run(
            [pre_commit, "run", "--all-files", "--color", "never"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "gatekeeper policy lint" in ok.stdout
    assert "Passed" in ok.stdout
    (work / ".opencode" / "agent" / "bad.md").write_text(FAILING_TEST, encoding="utf-8")
    (work / ".opencode" / "agent" / "shadow.md").write_text(SHADOWED, encoding="utf-8")
    bad = run()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "bad.md:8: error: test failed: `rm -rf x` is deny, expected allow" in bad.stdout
    assert "shadow.md:4: error:" in bad.stdout
    assert "Failed" in bad.stdout
