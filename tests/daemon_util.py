"""A real daemon for tests: in a thread of this process, or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gatekeeper.server import Daemon, ServeConfig

TEST_AGENT = """\
---
permission:
  bash:
    "*": ask
    "echo *": allow
    "printf *": allow
    "true": allow
    "false": allow
    "exit *": allow
    "sleep *": allow
    "cat *": allow
    "pwd": allow
    "od *": allow
    "python3 *": allow
    "/*python* *": allow
    "rm *": deny
  edit:
    "*": ask
---
"""


def short_dir() -> Path:
    """A short directory for sockets (AF_UNIX paths are limited to ~108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="gk", dir="/tmp"))


def make_policy_dir(root: Path, text: str = TEST_AGENT, name: str = "tester") -> Path:
    d = root / "policies"
    d.mkdir(exist_ok=True)
    (d / f"{name}.md").write_text(text, encoding="utf-8")
    return d


class ThreadDaemon:
    """A daemon running on its own event loop in a background thread."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.daemon = Daemon(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadDaemon:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.daemon.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, fn: Any) -> Any:
        async def wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)


class Raw:
    """A raw protocol connection: bytes out, JSON lines in."""

    def __init__(self, path: Path, timeout: float = 20) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, **fields: Any) -> None:
        body = {"v": 1, **fields}
        self.sock.sendall(json.dumps(body).encode() + b"\n")

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def until(self, rid: Any, *final: str) -> list[dict[str, Any]]:
        """Messages for ``rid`` until one whose event is in ``final`` (or a reply/error)."""
        out: list[dict[str, Any]] = []
        while True:
            msg = self.recv()
            if msg.get("id") != rid:
                continue
            out.append(msg)
            if "error" in msg or msg.get("event") in final or "event" not in msg:
                return out

    def close(self) -> None:
        self.sock.close()


def wait_for_socket(
    path: Path, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            r = Raw(path, timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        try:
            r.send(id=0, op="status")
            r.recv()
            return
        except (OSError, EOFError):
            pass
        finally:
            r.close()
        time.sleep(0.05)
    raise TimeoutError(f"no daemon on {path}")


@contextlib.contextmanager
def subprocess_daemon(
    sock: Path, policy_dir: Path, *extra: str, agent: str = "tester"
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "serve",
            "--socket",
            str(sock),
            "--policy-dir",
            str(policy_dir),
            "--default-agent",
            agent,
            *([] if "--audit-log" in extra else ["--no-audit"]),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_for_socket(sock, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def processes_with(marker_arg: str) -> list[int]:
    """PIDs whose command line contains ``marker_arg`` (to look for orphans)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker_arg in a for a in p.info["cmdline"] or []):
                found.append(p.pid)
    return found
