"""Command analysis in a separate process, so a crash of the C parser cannot crash the daemon.

tree-sitter-bash is C code fed with attacker-chosen text. The daemon therefore never parses in
its own process: :class:`IsolatedAnalyser` keeps an LRU cache of analyses and sends the misses
to a long-lived worker (``python -m gatekeeper.analysis_worker``) over a pipe, one JSON line
each way. If the worker dies (a segfault) or does not answer in time, it is replaced and that
command gets a single ``ask`` part: what could not be analysed is never allowed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Any

from gatekeeper.errors import BadInput
from gatekeeper.shell import Analysis, Part, analyse, check_input

log = logging.getLogger(__name__)

CACHE_SIZE = 8192
TIMEOUT = 2.0  # seconds a worker may take for one command before it is replaced


def _encode_parts(parts: tuple[Part, ...]) -> list[list[Any]]:
    return [[p.permission, p.subject, p.floor, p.note, list(p.variants)] for p in parts]


def _decode_parts(raw: list[list[Any]]) -> tuple[Part, ...]:
    return tuple(
        Part(str(perm), str(subject), floor, note, tuple(str(v) for v in variants))
        for perm, subject, floor, note, variants in raw
    )


class IsolatedAnalyser:
    """A cached analyser backed by a worker process; callable like ``analyse_command``."""

    def __init__(self, timeout: float = TIMEOUT, command: list[str] | None = None) -> None:
        self.timeout = timeout
        self.command = command or [sys.executable, "-m", "gatekeeper.analysis_worker"]
        self._cache: OrderedDict[tuple[str, str, str | None], Analysis] = OrderedDict()
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is not None:
            self.close()  # died since the last call: reap it and close its pipes
        if self._proc is None:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        return self._proc

    def _replace(self, why: str) -> None:
        self.restarts += 1
        log.error("analysis worker %s; starting a new one", why)
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.wait(5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __call__(self, command: str | bytes, cwd: str, home: str | None = None) -> Analysis:
        text = check_input(command)  # BadInput for NUL bytes and invalid UTF-8
        key = (text, cwd, home)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        analysis = self._ask_worker(text, cwd, home)
        if analysis is None:
            return Analysis(
                text, (Part("bash", text[:200], "ask", "the command could not be analysed safely"),)
            )
        self._cache[key] = analysis
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return analysis

    def _ask_worker(self, text: str, cwd: str, home: str | None) -> Analysis | None:
        request = json.dumps({"c": text, "w": cwd, "h": home}).encode() + b"\n"
        for attempt in range(2):  # a worker that died since the last call gets one retry
            proc = self._worker()
            if proc.stdin is None or proc.stdout is None:  # pragma: no cover - always piped
                return None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                line = self._read_line(proc)
            except (BrokenPipeError, OSError):
                self._replace("was gone")
                if attempt == 0:
                    continue
                return None
            if line is None:
                self._replace("did not answer in time")
                return None
            if not line:
                self._replace("crashed on a command")
                return None
            reply = json.loads(line)
            if "parts" not in reply:
                raise BadInput(str(reply.get("error", "bad input")))
            return Analysis(text, _decode_parts(reply["parts"]))
        return None

    def _read_line(self, proc: subprocess.Popen[bytes]) -> bytes | None:
        """One reply line; b"" when the worker died, None on timeout."""
        if proc.stdout is None:  # pragma: no cover - always piped
            return b""
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b""
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)


def main() -> int:
    """The worker: one JSON request per line on stdin, one JSON reply per line on stdout."""
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            analysis = analyse(req["c"], req["w"], req["h"])
            reply: dict[str, Any] = {"parts": _encode_parts(analysis.parts)}
        except BadInput as exc:
            reply = {"error": str(exc)}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
