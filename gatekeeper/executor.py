"""Running allowed commands: ``bash -c`` in its own session, output streamed, trees killed.

Every run starts in a new session and process group and carries ``GATEKEEPER_RUN=<id>`` in its
environment. Killing a run kills its process group, every descendant psutil can see, and every
process still marked with its id. A *guardian* process, forked when the daemon starts, holds the
list of live runs; if the daemon dies, even by SIGKILL, the guardian sees its pipe close and
kills what is left, so no command outlives the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Iterable

import psutil

log = logging.getLogger(__name__)

MARKER = "GATEKEEPER_RUN"
CHUNK = 64 * 1024
LINGER = 2.0  # seconds to drain the pipes after a run's leftovers were killed
BASH = shutil.which("bash") or "/bin/bash"

OutputSink = Callable[[str, bytes], Awaitable[None]]


def _marked(markers: set[str]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    me = os.getuid()
    for p in psutil.process_iter(["uids"]):
        try:
            if p.info["uids"] is None or p.info["uids"].real != me:
                continue
            if p.environ().get(MARKER) in markers:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def kill_tree(pid: int, markers: Iterable[str] = (), sig: int = signal.SIGKILL) -> None:
    """Signal a run's process group, its descendants and the processes marked as its own."""
    procs: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    marks = set(markers)
    if marks:
        procs.extend(_marked(marks))
    for p in procs:
        with contextlib.suppress(psutil.Error, OSError):
            p.send_signal(sig)


class Guardian:
    """A forked helper that kills every live run if the daemon dies."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self.pid: int | None = None

    def start(self) -> None:
        """Fork the guardian. Call before the event loop or any thread starts."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guardian
            os.close(w)
            # Keep nothing of the daemon's but the pipe (not a listening socket systemd
            # handed over, nor the audit log).
            os.dup2(r, 3)
            os.closerange(4, 65536)
            r = 3
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            _guardian_loop(r)
            os._exit(0)
        os.close(r)
        self._fd, self.pid = w, pid

    def _send(self, line: str) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, line.encode() + b"\n")

    def expect(self, marker: str) -> None:
        """Before a run starts: if the daemon dies now, find its processes by this marker."""
        self._send(f"? {marker}")

    def watch(self, pgid: int, marker: str) -> None:
        self._send(f"+ {pgid} {marker}")

    def forget(self, pgid: int) -> None:
        self._send(f"- {pgid}")

    def stop(self) -> None:
        """Orderly shutdown: the daemon cleaned up itself; tell the guardian to just exit."""
        if self._fd is not None:
            self._send("exit")
            os.close(self._fd)
            self._fd = None
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(self.pid, 0)
            self.pid = None


def _guardian_loop(fd: int) -> None:  # pragma: no cover - runs in the forked child
    live: dict[int, str] = {}
    expected: set[str] = set()
    buf = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.decode(errors="replace").split()
            if words == ["exit"]:
                return
            if len(words) == 2 and words[0] == "?":
                expected.add(words[1])
            elif len(words) == 3 and words[0] == "+":
                live[int(words[1])] = words[2]
                expected.discard(words[2])
            elif len(words) == 2 and words[0] == "-":
                live.pop(int(words[1]), None)
    # The daemon is gone without saying goodbye: nothing it started may outlive it.
    for pgid, marker in live.items():
        kill_tree(pgid, [marker])
    if expected:  # runs that were starting: known only by their marker
        for proc in _marked(expected):
            with contextlib.suppress(psutil.Error, OSError):
                proc.kill()


def split_utf8(data: bytes) -> tuple[str | None, bytes]:
    """Decode as much of ``data`` as is valid UTF-8, keeping a cut multi-byte tail for later.

    Returns (text, rest); text is None when the bytes are not UTF-8 at all.
    """
    for cut in range(4):
        head = data[: len(data) - cut] if cut else data
        try:
            return head.decode("utf-8"), data[len(head) :]
        except UnicodeDecodeError:
            continue
    return None, b""


class Execution:
    """One running command."""

    def __init__(self, proc: asyncio.subprocess.Process, marker: str) -> None:
        self.proc = proc
        self.marker = marker
        self.killed_by: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, why: str) -> None:
        if self.killed_by is None:
            self.killed_by = why
        if self.proc.returncode is None:
            kill_tree(self.proc.pid, [self.marker])


async def start(
    command: str, cwd: str, env: dict[str, str], stdin: bytes | None, marker: str
) -> Execution:
    """Start ``bash -c command`` exactly as decided (the same text, byte for byte)."""
    env = {**env, MARKER: marker}
    proc = await asyncio.create_subprocess_exec(
        BASH,
        "-c",
        command,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return Execution(proc, marker)


async def pump(execution: Execution, stdin: bytes | None, sink: OutputSink) -> int:
    """Feed stdin, stream stdout/stderr to ``sink`` as they come, return the exit status.

    The sink is awaited for each chunk, so a slow reader slows the command down instead of
    making the daemon buffer without bound.
    """
    proc = execution.proc

    async def feed() -> None:
        if proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin or b"")
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
            proc.stdin.close()

    async def read(name: str, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            data = await stream.read(CHUNK)
            if not data:
                return
            await sink(name, data)

    tasks = [
        asyncio.create_task(read("stdout", proc.stdout)),
        asyncio.create_task(read("stderr", proc.stderr)),
    ]
    if stdin is not None and proc.stdin is not None:
        tasks.append(asyncio.create_task(feed()))
    try:
        code = await proc.wait()
        # The command is over. Whatever it left running in its process group (`cmd &`)
        # goes with it: nothing a run started outlives it unsupervised.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        done, _ = await asyncio.wait(tasks, timeout=LINGER)
        if len(done) < len(tasks):
            # Something that left the group still holds our pipes: find it by its marker.
            kill_tree(proc.pid, [execution.marker])
            await asyncio.wait(tasks, timeout=LINGER)
        return code
    finally:
        for t in tasks:
            t.cancel()
        if proc.returncode is None:
            execution.kill(execution.killed_by or "cancelled")
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
