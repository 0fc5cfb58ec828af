"""systemd: the unit files, socket activation, sd_notify, and the install scripts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.systemd import Notifier
from tests.daemon_util import Raw, make_policy_dir, short_dir, wait_for_socket

REPO = Path(__file__).resolve().parent.parent


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing in CI: .ci/run should have installed systemd")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


# -- sd_notify -----------------------------------------------------------------------------


def listen_datagrams(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(20)
    return s


def next_message(s: socket.socket) -> dict[str, str]:
    data = s.recv(65536).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def test_sd_notify_ready_reloading_stopping(where: Path) -> None:
    notify = listen_datagrams(where / "notify")
    sock = where / "s.sock"
    env = {**os.environ, "NOTIFY_SOCKET": str(where / "notify")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "serve",
            "--socket",
            str(sock),
            "--policy-dir",
            str(make_policy_dir(where)),
            "--default-agent",
            "tester",
            "--no-audit",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = next_message(notify)
        assert ready["READY"] == "1"
        assert "serving 1 agent(s)" in ready["STATUS"]
        wait_for_socket(sock)  # READY came after the socket was served
        # The daemon keeps NOTIFY_SOCKET to itself: commands it runs do not see it.
        r = Raw(sock)
        r.send(id=1, op="run", command="echo ${NOTIFY_SOCKET:-unset}", cwd=str(where))
        out = "".join(e.get("data", "") for e in r.until(1, "exit"))
        r.close()
        assert out == "unset\n"
        proc.send_signal(signal.SIGHUP)
        reloading = next_message(notify)
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert next_message(notify)["READY"] == "1"
        proc.send_signal(signal.SIGTERM)
        assert next_message(notify)["STOPPING"] == "1"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_notifier_is_silent_without_systemd_and_speaks_abstract_sockets() -> None:
    Notifier("").send("READY=1")  # no socket: nothing happens, nothing raises
    name = f"gk-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        Notifier("@" + name).ready("up")
        assert s.recv(1024) == b"READY=1\nSTATUS=up"
    finally:
        s.close()


# -- socket activation ---------------------------------------------------------------------


def test_socket_activation_answers_a_check(where: Path) -> None:
    activate = require("systemd-socket-activate")
    sock = where / "s.sock"
    started = where / "started"
    policies = make_policy_dir(where)
    # The daemon records that it started, so we can see it was started by the connection.
    wrapper = where / "serve.sh"
    wrapper.write_text(
        f"#!/bin/sh\ntouch {started}\nexec {sys.executable} -m gatekeeper serve --socket {sock} "
        f"--policy-dir {policies} --default-agent tester --no-audit\n"
    )
    wrapper.chmod(0o755)
    proc = subprocess.Popen(
        [activate, "-l", str(sock), str(wrapper)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sock.exists()
        time.sleep(0.3)
        assert not started.exists()  # nobody asked yet: no daemon
        r = Raw(sock, timeout=30)
        r.send(id=1, op="check", command="echo hi && rm -rf /", cwd="/tmp")
        reply = r.recv()
        r.close()
        assert started.exists()
        assert reply["decision"] == "deny"
        assert [p["subject"] for p in reply["parts"]][:2] == ["echo hi", "rm -rf /"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()


# -- unit files and install scripts --------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home = tmp_path_factory.mktemp("home")
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "PYTHON": sys.executable,
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "LANG": "C.UTF-8",
    }
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
        if key in os.environ:
            env[key] = os.environ[key]
    first = subprocess.run(
        [str(REPO / "scripts" / "install")], env=env, capture_output=True, timeout=600, check=False
    )
    assert first.returncode == 0, first.stderr.decode()
    env["FIRST_OUTPUT"] = first.stdout.decode()
    return home, env


def test_install_puts_everything_in_place(installed: tuple[Path, dict[str, str]]) -> None:
    home, env = installed
    out = env["FIRST_OUTPUT"]
    units = home / ".config" / "systemd" / "user"
    gk = home / ".local" / "share" / "gatekeeper" / "venv" / "bin" / "gatekeeper"
    assert (units / "gatekeeper.socket").is_file()
    service = (units / "gatekeeper.service").read_text()
    assert f"ExecStart={gk} serve" in service
    assert "@GATEKEEPER@" not in service
    assert "@DOCS@" not in service
    assert (home / ".local" / "bin" / "gatekeeper").resolve() == gk.resolve()
    version = subprocess.run(
        [str(home / ".local" / "bin" / "gatekeeper"), "--version"], capture_output=True, check=True
    )
    assert version.stdout.startswith(b"gatekeeper ")
    # No systemd user manager here: it says so and how to go on.
    assert "systemctl --user enable --now gatekeeper.socket" in out


def test_installed_units_pass_systemd_analyze(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    analyze = require("systemd-analyze")
    home, _ = installed
    units = home / ".config" / "systemd" / "user"
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(
        [
            analyze,
            "verify",
            "--user",
            str(units / "gatekeeper.socket"),
            str(units / "gatekeeper.service"),
        ],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert b"gatekeeper" not in proc.stderr  # no warnings about our units


def test_install_is_idempotent_and_uninstall_undoes_it(
    installed: tuple[Path, dict[str, str]],
) -> None:
    home, env = installed
    units = home / ".config" / "systemd" / "user"
    before = {p.name: p.read_bytes() for p in units.iterdir()}
    again = subprocess.run(
        [str(REPO / "scripts" / "install")], env=env, capture_output=True, timeout=600, check=False
    )
    assert again.returncode == 0, again.stderr.decode()
    assert b"creating the venv" not in again.stdout
    assert {p.name: p.read_bytes() for p in units.iterdir()} == before
    state = home / ".local" / "state" / "gatekeeper"
    state.mkdir(parents=True)
    (state / "audit.jsonl").write_text("kept\n")
    gone = subprocess.run(
        [str(REPO / "scripts" / "uninstall")],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert gone.returncode == 0
    assert not (units / "gatekeeper.service").exists()
    assert not (home / ".local" / "bin" / "gatekeeper").exists()
    assert not (home / ".local" / "share" / "gatekeeper").exists()
    assert (state / "audit.jsonl").read_text() == "kept\n"
    twice = subprocess.run(
        [str(REPO / "scripts" / "uninstall")],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert twice.returncode == 0
    assert b"nothing to remove" in twice.stdout
