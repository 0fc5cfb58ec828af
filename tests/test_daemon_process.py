"""The daemon as a real subprocess: signals, orphans, the socket file, the CLI clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_util import (
    Raw,
    make_policy_dir,
    processes_with,
    short_dir,
    subprocess_daemon,
    wait_for_socket,
)


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def wait_gone(marker: str, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = processes_with(marker)
        if not left:
            return []
        time.sleep(0.05)
    return processes_with(marker)


def start_sleep(sock: Path, cwd: Path, marker: str) -> Raw:
    r = Raw(sock)
    r.send(id=1, op="run", command=f"sleep {marker}; sleep {marker}", cwd=str(cwd))
    assert r.recv()["decision"] == "allow"
    deadline = time.monotonic() + 5
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker)
    return r


def test_sigterm_stops_cleanly_and_kills_runs(where: Path) -> None:
    sock = where / "s.sock"
    with subprocess_daemon(sock, make_policy_dir(where), "--grace", "0.5") as proc:
        r = start_sleep(sock, where, "921.25")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        r.close()
    assert wait_gone("921.25") == []
    assert not sock.exists()


def test_sigkill_leaves_no_orphans(where: Path) -> None:
    sock = where / "s.sock"
    with subprocess_daemon(sock, make_policy_dir(where)) as proc:
        r = start_sleep(sock, where, "922.25")
        proc.kill()
        proc.wait(10)
        r.close()
    assert wait_gone("922.25") == []


def test_stale_socket_is_replaced(where: Path) -> None:
    sock = where / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # a socket file with nobody listening: a dead daemon's leftover
    with subprocess_daemon(sock, make_policy_dir(where)):
        r = Raw(sock)
        r.send(id=1, op="status")
        assert r.recv()["agents"] == ["tester"]
        r.close()


def test_second_daemon_reports_already_running(where: Path) -> None:
    sock = where / "s.sock"
    policies = make_policy_dir(where)
    with subprocess_daemon(sock, policies):
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "gatekeeper",
                "serve",
                "--socket",
                str(sock),
                "--policy-dir",
                str(policies),
                "--default-agent",
                "tester",
                "--no-audit",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 1
        assert b"already running" in second.stderr
        wait_for_socket(sock)  # the first one is left alone


def test_broken_policy_at_start_is_one_clear_line(where: Path) -> None:
    policies = make_policy_dir(where, text="---\npermission:\n  bash: alow\n---\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "serve",
            "--socket",
            str(where / "s.sock"),
            "--policy-dir",
            str(policies),
            "--default-agent",
            "tester",
            "--no-audit",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert b"tester.md:3: permission.bash: 'alow'" in proc.stderr


def test_sighup_reloads(where: Path) -> None:
    sock = where / "s.sock"
    policies = make_policy_dir(where)
    with subprocess_daemon(sock, policies) as proc:
        f = policies / "tester.md"
        f.write_text(f.read_text().replace('"echo *": allow', '"echo *": deny'))
        proc.send_signal(signal.SIGHUP)
        r = Raw(sock)
        deadline = time.monotonic() + 5
        decision = None
        while decision != "deny" and time.monotonic() < deadline:
            r.send(id=1, op="check", command="echo x", cwd="/tmp")
            decision = r.recv()["decision"]
            time.sleep(0.05)
        r.close()
        assert decision == "deny"


def gk(sock: Path, *args: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GATEKEEPER_SOCKET": str(sock)}
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def shell(sock: Path, script: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GATEKEEPER_SOCKET": str(sock)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from gatekeeper.shell_entry import main; raise SystemExit(main())",
            "-c",
            script,
        ],
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def test_gatekeeper_run_statuses(where: Path) -> None:
    sock = where / "s.sock"
    with subprocess_daemon(sock, make_policy_dir(where), "--approval-timeout", "0.5"):
        ok = gk(sock, "run", "--", "echo hello; exit 4", cwd=where)
        assert (ok.returncode, ok.stdout) == (4, b"hello\n")
        denied = gk(sock, "run", "--", "rm -rf x", cwd=where)
        assert denied.returncode == 126
        assert denied.stderr.startswith(b"gatekeeper: blocked: deny")
        asked = gk(sock, "run", "--", "touch x", cwd=where)
        assert asked.returncode == 126
        assert b"waiting for a human" in asked.stderr
        assert b"nobody answered within 0.5 s" in asked.stderr
        assert not (where / "x").exists()
        status = gk(sock, "status", cwd=where)
        assert status.returncode == 0 and b"tester" in status.stdout
    gone = gk(sock, "run", "--", "echo hi", cwd=where)
    assert gone.returncode == 125
    assert b"no gatekeeper daemon" in gone.stderr


@pytest.mark.parametrize(
    "script",
    [
        "echo out; echo err >&2; exit 7",
        'printf "%s|" "$HOME" "$(pwd)"',
        "cat",
        "kill -TERM $$",
    ],
)
def test_gatekeeper_shell_behaves_like_bash_c(where: Path, script: str) -> None:
    policy = make_policy_dir(where)
    f = policy / "tester.md"
    f.write_text(f.read_text().replace('"*": ask', '"*": allow').replace('"rm *": deny', ""))
    sock = where / "s.sock"
    with subprocess_daemon(sock, policy):
        gated = shell(sock, script, where)
    direct = subprocess.run(
        ["bash", "-c", script], capture_output=True, cwd=where, timeout=30, check=False
    )
    assert (gated.returncode, gated.stdout, gated.stderr) == (
        direct.returncode,
        direct.stdout,
        direct.stderr,
    )


def test_gatekeeper_shell_blocked(where: Path) -> None:
    sock = where / "s.sock"
    with subprocess_daemon(sock, make_policy_dir(where)):
        blocked = shell(sock, "rm -rf /", where)
    assert blocked.returncode == 126
    assert b"blocked" in blocked.stderr
