"""Command analysis in worker processes, off the daemon's event loop.

tree-sitter-bash is C code fed with attacker-chosen text, and confirming an allow runs two more
parsers as processes (:mod:`gatekeeper.readers`). The daemon therefore never parses in its own
process, and never waits for a parser on its event loop: :class:`AnalysisPool` keeps a few
long-lived workers (``python -m gatekeeper.analysis_worker``), one JSON line each way, and an
LRU cache of their answers in the daemon. A worker that dies (a segfault) or does not answer in
time is replaced and that one request gets an ``ask`` part: what could not be analysed or
confirmed is never allowed.

Requests are served fairly: each client (connection) has its own queue and the workers take
from the queues in turn, so one client's flood of long commands delays its own requests, not
everyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import sys
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.errors import BadInput
from gatekeeper.readers import Readers
from gatekeeper.shell import Analysis, Part, analyse, check_input

log = logging.getLogger(__name__)

CACHE_SIZE = 8192
_Key = tuple[str, str, str | None, str | None]  # (command, cwd, home, root)
TIMEOUT = 2.0  # seconds a worker may take to analyse one command before it is replaced
CONFIRM_TIMEOUT = 6.0  # … and to confirm one with the independent readers


def _encode_parts(parts: tuple[Part, ...]) -> list[list[Any]]:
    return [
        [p.permission, p.subject, p.floor, p.note, list(p.variants), list(p.written)] for p in parts
    ]


def _decode_parts(raw: list[list[Any]]) -> tuple[Part, ...]:
    return tuple(
        Part(
            str(perm),
            str(subject),
            floor,
            note,
            tuple(str(v) for v in variants),
            tuple(str(w) for w in written),
        )
        for perm, subject, floor, note, variants, written in raw
    )


def unsafe(text: str, why: str) -> tuple[Part, ...]:
    return (Part("bash", text[:200], "ask", why),)


@dataclass(eq=False)
class _Job:
    op: str  # "analyse" or "confirm"
    text: str
    cwd: str
    home: str | None
    root: str | None
    future: asyncio.Future[dict[str, Any]]


@dataclass(eq=False)
class _Scheduler:
    """Per-client queues, served in turn (round robin)."""

    queues: dict[Hashable, deque[_Job]] = field(default_factory=dict)
    turn: deque[Hashable] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, client: Hashable, job: _Job) -> None:
        q = self.queues.get(client)
        if q is None:
            q = self.queues[client] = deque()
            self.turn.append(client)
        q.append(job)
        self.ready.set()

    async def get(self) -> _Job:
        while True:
            while self.turn:
                client = self.turn.popleft()
                q = self.queues[client]
                job = q.popleft()
                if q:
                    self.turn.append(client)
                else:
                    del self.queues[client]
                if not job.future.done():  # its requester may have given up
                    return job
            self.ready.clear()
            await self.ready.wait()

    def pending(self) -> int:
        """Jobs still wanted (a job whose requester gave up waits only to be skipped)."""
        return sum(not job.future.done() for q in self.queues.values() for job in q)


class AnalysisPool:
    """Cached analysis and confirmation, served by worker processes (see the module doc)."""

    def __init__(
        self,
        workers: int = 2,
        *,
        timeout: float = TIMEOUT,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        command: list[str] | None = None,
    ) -> None:
        self.size = max(1, workers)
        self.timeout = timeout
        self.confirm_timeout = confirm_timeout
        self.command = command or [sys.executable, "-m", "gatekeeper.analysis_worker"]
        self._analyses: OrderedDict[_Key, Analysis] = OrderedDict()
        self._confirmed: OrderedDict[str, tuple[Part, ...]] = OrderedDict()
        self._scheduler = _Scheduler()
        self._tasks: list[asyncio.Task[None]] = []
        self._procs: set[asyncio.subprocess.Process] = set()
        self.restarts = 0

    # -- the daemon's side ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (call from the event loop)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._serve(i)) for i in range(self.size)]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        for proc in list(self._procs):
            await _kill(proc)
        self._procs.clear()

    def cached(
        self, command: str, cwd: str, home: str | None, root: str | None = None
    ) -> Analysis | None:
        """The analysis of a command seen before, without waiting; None if not known."""
        key = (command, cwd, home, root)
        hit = self._analyses.get(key)
        if hit is not None:
            self._analyses.move_to_end(key)
        return hit

    def cached_confirmation(self, command: str) -> tuple[Part, ...] | None:
        return self._confirmed.get(command)

    async def analyse(
        self,
        command: str | bytes,
        cwd: str,
        home: str | None = None,
        client: Hashable = None,
        root: str | None = None,
    ) -> Analysis:
        """The analysis of ``command`` (BadInput for NUL bytes and invalid UTF-8)."""
        text = check_input(command)
        hit = self.cached(text, cwd, home, root)
        if hit is not None:
            return hit
        reply = await self._submit("analyse", text, cwd, home, root, client)
        if "error" in reply:
            raise BadInput(str(reply["error"]))
        if "parts" not in reply:
            return Analysis(text, unsafe(text, str(reply.get("failed", "not analysed"))))
        analysis = Analysis(text, _decode_parts(reply["parts"]))
        _remember(self._analyses, (text, cwd, home, root), analysis)
        return analysis

    async def confirm(self, analysis: Analysis, client: Hashable = None) -> tuple[Part, ...]:
        """Parts to add when the independent readers do not confirm gatekeeper's reading."""
        hit = self._confirmed.get(analysis.command)
        if hit is not None:
            return hit
        # Any cwd does: how bash reads the text does not depend on where it runs.
        reply = await self._submit("confirm", analysis.command, "/", None, None, client)
        if "extra" not in reply:
            return unsafe(
                analysis.command, f"bash's reading could not be confirmed: {reply.get('failed')}"
            )
        extra = _decode_parts(reply["extra"])
        _remember(self._confirmed, analysis.command, extra)
        return extra

    def pending(self) -> int:
        return self._scheduler.pending()

    async def _submit(
        self, op: str, text: str, cwd: str, home: str | None, root: str | None, client: Hashable
    ) -> dict[str, Any]:
        self.start()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._scheduler.put(client, _Job(op, text, cwd, home, root, future))
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()  # our requester is gone: the job is skipped

    # -- the workers ------------------------------------------------------------------------------

    async def _serve(self, index: int) -> None:
        proc: asyncio.subprocess.Process | None = None
        try:
            while True:
                job = await self._scheduler.get()
                if proc is None or proc.returncode is not None:
                    if proc is not None:  # died since its last job: a fresh one takes this
                        self._procs.discard(proc)
                    proc = await self._spawn()
                reply, healthy = await self._ask(proc, job)
                if not job.future.done():
                    job.future.set_result(reply)
                if not healthy:
                    await _kill(proc)
                    self._procs.discard(proc)
                    proc = None
        finally:
            if proc is not None:
                await _kill(proc)
                self._procs.discard(proc)

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=64 * 1024 * 1024,
        )
        self._procs.add(proc)
        return proc

    async def _ask(
        self, proc: asyncio.subprocess.Process, job: _Job
    ) -> tuple[dict[str, Any], bool]:
        """(the worker's reply, whether the worker is still usable)."""
        assert proc.stdin is not None  # noqa: S101 - always piped
        assert proc.stdout is not None  # noqa: S101
        request = json.dumps(
            {"op": job.op, "c": job.text, "w": job.cwd, "h": job.home, "r": job.root}
        )
        timeout = self.confirm_timeout if job.op == "confirm" else self.timeout
        try:
            proc.stdin.write(request.encode() + b"\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError:
            self._replaced("did not answer in time")
            return {"failed": "the command could not be analysed safely (timeout)"}, False
        except (OSError, ConnectionError, ValueError):
            self._replaced("was gone")
            return {"failed": "the command could not be analysed safely"}, False
        if not line:
            self._replaced("crashed on a command")
            return {"failed": "the command could not be analysed safely"}, False
        try:
            reply = json.loads(line)
        except ValueError:
            self._replaced("answered garbage")
            return {"failed": "the command could not be analysed safely"}, False
        return (reply if isinstance(reply, dict) else {"failed": "bad reply"}), True

    def _replaced(self, why: str) -> None:
        self.restarts += 1
        log.error("analysis worker %s; starting a new one", why)


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    if len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 5)
    if proc.stdin is not None:
        proc.stdin.close()


# --------------------------------------------------------------------------------------------
# The worker process


def main() -> int:
    """The worker: one JSON request per line on stdin, one JSON reply per line on stdout.

    ``{"op": "analyse", "c": command, "w": cwd, "h": home, "r": root}`` → ``{"parts": […]}``;
    ``{"op": "confirm", …}`` → ``{"extra": […]}`` (parts the independent readers add: none when
    they agree); bad input → ``{"error": "…"}``. Between requests, while none waits, it starts
    the readers' next processes, so that a confirmation finds them ready.
    """
    readers = Readers(prestart=2)
    analyses: OrderedDict[_Key, Analysis] = OrderedDict()
    out = sys.stdout.buffer
    lines = _Lines(sys.stdin.fileno())
    try:
        readers.refill()
        while True:
            line = lines.next()
            if line is None:
                break
            try:
                req = json.loads(line)
                key: _Key = (str(req["c"]), str(req["w"]), req.get("h"), req.get("r"))
                analysis = analyses.get(key) or analyse(*key)
                _remember(analyses, key, analysis)
                reply: dict[str, Any]
                if req.get("op") == "confirm":
                    reply = {"extra": _encode_parts(readers.confirm(analysis))}
                else:
                    reply = {"parts": _encode_parts(analysis.parts)}
            except BadInput as exc:
                reply = {"error": str(exc)}
            out.write(json.dumps(reply).encode() + b"\n")
            out.flush()
            while not lines.pending() and readers.refill_one():
                pass  # the next readers start while nobody waits
    finally:
        readers.close()
    return 0


class _Lines:
    """Lines from a file descriptor, and whether one is waiting (unlike a buffered file,
    which may hold the next line where ``select`` cannot see it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def next(self) -> bytes | None:
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def pending(self) -> bool:
        return b"\n" in self.buf or bool(select.select([self.fd], [], [], 0)[0])


if __name__ == "__main__":
    os.environ.pop("GATEKEEPER_RUN", None)
    raise SystemExit(main())
