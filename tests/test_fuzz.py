"""The differential fuzzer: every line gatekeeper allows is run under real bash, and must not
run a program or write a file the policy does not allow.

Lines come from a grammar (tests/fuzz_lines.py); bash is the oracle (tests/bash_oracle.py:
stand-in programs on PATH record their argv, the sandbox is diffed for writes, no network).
CI runs a seeded, bounded pass. For a longer run on your machine:

    GATEKEEPER_FUZZ_CASES=50000 GATEKEEPER_FUZZ_SEED=7 .venv/bin/python -m pytest \
        tests/test_fuzz.py -k fuzz -s

Each failure it ever finds goes into tests/data/fuzz_found.json, which every run replays.
``GATEKEEPER_FUZZ_WALKER_ONLY=1`` asks the tree-sitter walk alone (no independent readers):
how many of its allows bash would have contradicted is printed, to see what the readers catch.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper import readers
from gatekeeper.engine import decide_command, decide_part, decide_path
from gatekeeper.errors import BadInput
from gatekeeper.policy import Policy, parse_policy
from gatekeeper.shell import Part
from tests.bash_oracle import Observed, Sandbox, can_unshare
from tests.fuzz_lines import LineMaker

POLICY = """\
---
permission:
  bash:
    "*": ask
    "echo *": allow
    "printf *": allow
    "cat *": allow
    "ls *": allow
    "grep *": allow
    "wc *": allow
    "head *": allow
    "git status*": allow
    "git log*": allow
    "git diff*": allow
    "npm*": allow
    "sort *": allow
    "sed *": allow
    "pushd *": allow
    "popd": allow
    "tee *": allow
    "true": allow
    "[ *": allow
    "test *": allow
    "bash -c *": allow
    "sh -c *": allow
    "rm *": deny
    "curl *": deny
  edit:
    "*": ask
  write:
    "*": ask
    "out/*": allow
    "*.log": allow
  external_directory:
    "*": ask
---
"""
FOUND = Path(__file__).parent / "data" / "fuzz_found.json"
CASES = int(os.environ.get("GATEKEEPER_FUZZ_CASES", "12000"))
SEED = int(os.environ.get("GATEKEEPER_FUZZ_SEED", "20261204"))
BUDGET_S = float(os.environ.get("GATEKEEPER_FUZZ_SECONDS", "75"))
WALKER_ONLY = os.environ.get("GATEKEEPER_FUZZ_WALKER_ONLY") == "1"

# Root (CI) must be able to sandbox: only a user without the rights skips.
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not can_unshare(), reason="needs unshare -n (root) for a sandbox"
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, "fuzz.md", "fuzz")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


def violations(policy: Policy, box: Sandbox, seen: Observed) -> list[str]:
    """What bash did that the policy does not allow."""
    out: list[str] = []
    for argv in seen.executed:
        subject = " ".join([posixpath.basename(argv[0]), *argv[1:]])
        if decide_part(policy, Part("bash", subject)).decision != "allow":
            out.append(f"ran {argv!r}")
    for path in seen.written:
        d = decide_path(policy, "write", path, str(box.proj), str(box.home))
        if d.decision != "allow":
            out.append(f"wrote {path}")
    return out


def decision_of(policy: Policy, box: Sandbox, line: str, *, confirm: bool = True) -> str | None:
    """The engine's decision for ``line`` in the sandbox's project; None for bad input."""
    try:
        return decide_command(
            policy,
            line,
            str(box.proj),
            str(box.home),
            confirm=readers.confirm if confirm else None,
        ).decision
    except BadInput:
        return None  # not a command (a NUL byte …): refused, never run


def check_line(policy: Policy, box: Sandbox, line: str, *, confirm: bool = True) -> list[str]:
    """[] if the line is not allowed, or is allowed and bash does only what is allowed."""
    if decision_of(policy, box, line, confirm=confirm) != "allow":
        return []
    return violations(policy, box, box.run(line))


def found_lines() -> list[str]:
    if not FOUND.exists():
        return []
    lines: list[str] = json.loads(FOUND.read_text())
    return lines


@pytest.mark.parametrize("line", found_lines())
def test_what_the_fuzzer_found_stays_fixed(policy: Policy, sandbox: Sandbox, line: str) -> None:
    assert check_line(policy, sandbox, line) == []
    # and the walk on its own already gets it right (fixed where it lives, not only caught)
    assert check_line(policy, sandbox, line, confirm=False) == []


def test_the_oracle_sees_what_bash_runs_and_writes(policy: Policy, sandbox: Sandbox) -> None:
    """The oracle itself can fail: a forbidden program and a forbidden write are reported."""
    seen = sandbox.run("echo a; rm -rf x; echo b > ../outside/w; echo c > out/ok")
    assert ["echo", "a"] in seen.executed
    assert ["rm", "-rf", "x"] in seen.executed
    bad = violations(policy, sandbox, seen)
    assert "ran ['rm', '-rf', 'x']" in bad
    assert any(v.endswith("outside/w") for v in bad)
    assert not any(v.endswith("out/ok") for v in bad)
    # wrappers and shells run for real, and what they run is seen too
    seen = sandbox.run("env X=1 bash -c 'evil 1'")
    assert ["evil", "1"] in seen.executed


def test_fuzz_allows_only_what_bash_confirms(policy: Policy, sandbox: Sandbox) -> None:
    maker = LineMaker(SEED)
    started = time.monotonic()
    failures: list[tuple[str, list[str]]] = []
    allowed = ran = 0
    for _ in range(CASES):
        if time.monotonic() - started > BUDGET_S and not os.environ.get("GATEKEEPER_FUZZ_CASES"):
            break
        line = maker.make()
        decision = decision_of(policy, sandbox, line, confirm=not WALKER_ONLY)
        if decision is None:
            continue
        ran += 1
        if decision != "allow":
            continue
        allowed += 1
        bad = violations(policy, sandbox, sandbox.run(line))
        if bad:
            failures.append((line, bad))
    print(f"\nfuzz: seed {SEED}, {ran} lines decided, {allowed} allowed and run under bash, "
          f"{len(failures)} contradicted by bash, {time.monotonic() - started:.1f} s")  # fmt: skip
    assert ran > 200, "the fuzzer made too few lines to mean anything"
    assert allowed > 20, "the fuzzer's lines were (almost) never allowed: the oracle saw nothing"
    shown = "\n".join(f"{line!r}: {bad}" for line, bad in failures[:20])
    assert not failures, f"bash did what the policy does not allow:\n{shown}"
