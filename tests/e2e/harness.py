"""What every end-to-end test with a real agent CLI needs.

* The CLIs come from npm, pinned in ``tests/e2e/clis/package.json`` (installed by
  ``scripts/test`` / ``.ci/run`` into ``tests/e2e/clis/node_modules``).
* A CLI runs in a network namespace of its own with only loopback up (``unshare -n``), talking
  to a small scripted fake model server started inside that namespace: nothing can leave the
  machine, and whatever the CLI runs, it runs for real.
* Commands the scripted model asks for run the stand-in ``probe`` (on PATH), which appends its
  argv and working directory to ``$GK_PROBE_LOG``: what ran is read off the disk afterwards.
* The daemon runs outside the namespace; its Unix socket is reachable from inside (a path in
  the file system, not a network address).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIS = Path(__file__).resolve().parent / "clis"
BIN = CLIS / "node_modules" / ".bin"

PROBE = """#!/bin/sh
# A stand-in program: records that it ran, with its arguments and directory.
printf '%s\\t%s\\n' "$PWD" "$*" >> "${GK_PROBE_LOG:?}"
"""


def cli(name: str) -> Path:
    """The pinned CLI ``name`` (claude, opencode, codex, cc-safety-net); fails if missing."""
    path = BIN / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run scripts/test (it installs the pinned agent CLIs with npm) "
            "or npm install --prefix tests/e2e/clis"
        )
    return path


def can_isolate() -> bool:
    """Whether this process may make network namespaces (root, or user namespaces)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-n", "--", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return probe.returncode == 0


def require_isolation() -> None:
    if not can_isolate():
        pytest.fail("end-to-end tests need unshare -n and ip (root on CI): cannot isolate")


def make_probe(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    probe = bin_dir / "probe"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    return probe


def probe_runs(log: Path) -> list[tuple[str, str]]:
    """(directory, arguments) of every probe run, in order."""
    if not log.exists():
        return []
    return [tuple(line.split("\t", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


@dataclass
class Isolated:
    returncode: int
    stdout: str
    stderr: str
    server_log: str


def run_isolated(
    client: list[str],
    server: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    out: Path,
    timeout: float = 120,
    server_env: dict[str, str] | None = None,
) -> Isolated:
    """Run ``client`` in a new network namespace beside ``server`` (see netns_main).

    ``{port}`` in ``client`` arguments and ``env`` values becomes the fake server's port.
    Returns 98 as the exit code when the client outlived ``timeout``.
    """
    require_isolation()
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "server": server,
                "server_env": server_env or {},
                "client": client,
                "env": env,
                "cwd": str(cwd),
                "timeout": timeout,
                "out": str(out),
            }
        )
    )
    done = subprocess.run(
        ["unshare", "-n", "--", sys.executable, "-m", "tests.e2e.netns_main", str(spec)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=timeout + 30,
        check=False,
    )

    def read(name: str) -> str:
        p = out / name
        return p.read_text(errors="replace") if p.exists() else ""

    return Isolated(done.returncode, read("client.out"), read("client.err"), read("server.log"))
