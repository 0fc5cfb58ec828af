"""The analysis workers: a parser crash or hang costs one "ask", never the daemon; no client's
flood holds up another's requests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gatekeeper.analysis_worker import AnalysisPool
from gatekeeper.errors import BadInput
from gatekeeper.server import ServeConfig
from gatekeeper.shell import analyse
from tests.daemon_util import Raw, ThreadDaemon, make_policy_dir, short_dir

T = TypeVar("T")

COMMANDS = [
    "npm test && rm -rf build",
    "echo $(curl x | sh) > out.txt",
    "cd sub; find . -exec rm {} \\;",
    "bash -c 'sudo reboot'",
    "FOO=1 ls\u202e",
    "",
    "cat <<'EOF'\n$(rm x)\nEOF",
]

# A stand-in for a parser that segfaults on one input and hangs on another.
FLAKY_WORKER = textwrap.dedent(
    """
    import os, signal, sys, time
    from gatekeeper.analysis_worker import main
    import gatekeeper.analysis_worker as w
    real = w.analyse
    def analyse(command, cwd, home, root=None):
        if command == "crash me":
            os.kill(os.getpid(), signal.SIGSEGV)
        if command == "hang me":
            time.sleep(60)
        if command.startswith("slow "):
            trace = os.environ.get("GK_TEST_TRACE")
            if trace:
                with open(trace, "a") as f:
                    f.write(command + "\\n")
            time.sleep(0.2)
        return real(command, cwd, home, root)
    w.analyse = analyse
    sys.exit(main())
    """
)
FLAKY = [sys.executable, "-c", FLAKY_WORKER]


def with_pool(body: Callable[[AnalysisPool], Awaitable[T]], **kwargs: object) -> T:
    async def run() -> T:
        pool = AnalysisPool(**kwargs)  # type: ignore[arg-type]
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


@pytest.mark.parametrize("command", COMMANDS)
def test_the_workers_agree_with_the_parser(command: str) -> None:
    async def body(pool: AnalysisPool) -> None:
        got = await pool.analyse(command, "/proj", "/home/u")
        assert got.parts == analyse(command, "/proj", "/home/u").parts
        assert pool.cached(command, "/proj", "/home/u") is got

    with_pool(body)


def test_bad_input_is_refused_before_the_workers() -> None:
    async def body(pool: AnalysisPool) -> None:
        with pytest.raises(BadInput):
            await pool.analyse("ls\x00rm", "/proj")
        with pytest.raises(BadInput):
            await pool.analyse(b"ls \xff", "/proj")

    with_pool(body)


def test_a_killed_worker_is_replaced() -> None:
    async def body(pool: AnalysisPool) -> None:
        await pool.analyse("ls", "/proj")
        (proc,) = pool._procs
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        first = await pool.analyse("ls -la", "/proj")
        # The dead worker's answer is an ask; the next command gets a fresh worker.
        if first.parts[0].floor == "ask":
            assert first.parts[0].note == "the command could not be analysed safely"
        second = await pool.analyse("ls -l", "/proj")
        assert [p.subject for p in second.parts] == ["ls -l"]
        assert all(p.pid != proc.pid for p in pool._procs)

    with_pool(body, workers=1)


def test_a_crash_asks_and_the_next_command_works() -> None:
    async def body(pool: AnalysisPool) -> None:
        (part,) = (await pool.analyse("crash me", "/proj")).parts
        assert (part.floor, part.note) == ("ask", "the command could not be analysed safely")
        assert pool.restarts == 1
        (ok,) = (await pool.analyse("echo ok", "/proj")).parts
        assert (ok.subject, ok.floor) == ("echo ok", "allow")  # a real answer, not a stand-in ask
        # A failure is not remembered: the same text is analysed again next time.
        assert pool.cached("crash me", "/proj", None) is None

    with_pool(body, workers=1, command=FLAKY)


def test_a_hang_asks_within_the_timeout() -> None:
    async def body(pool: AnalysisPool) -> None:
        began = time.monotonic()
        (part,) = (await pool.analyse("hang me", "/proj")).parts
        assert part.floor == "ask"
        assert time.monotonic() - began < 10
        assert [p.subject for p in (await pool.analyse("echo ok", "/proj")).parts] == ["echo ok"]

    with_pool(body, workers=1, timeout=1.0, command=FLAKY)


def _started(trace: Path) -> list[str]:
    """The slow jobs a worker has begun, in order."""
    return trace.read_text().splitlines() if trace.exists() else []


async def _first_started(trace: Path) -> None:
    for _ in range(3000):
        if _started(trace):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never began a job")


def test_one_clients_flood_does_not_hold_up_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests are served per client in turn: B's one request overtakes A's queue. Checked
    by the order in which the worker began the jobs, not by time."""
    trace = tmp_path / "trace"
    monkeypatch.setenv("GK_TEST_TRACE", str(trace))

    async def body(pool: AnalysisPool) -> None:
        flood = [
            asyncio.create_task(pool.analyse(f"slow {i}", "/proj", client="A")) for i in range(10)
        ]
        await _first_started(trace)  # A's first job is in the worker
        await pool.analyse("slow B", "/proj", client="B")
        await asyncio.gather(*flood)
        order = _started(trace)
        assert sorted(order) == sorted([f"slow {i}" for i in range(10)] + ["slow B"])
        # B's job follows the one of A's in progress when it arrived (and at most the one A
        # was given before B's turn came round); never A's whole queue.
        assert order.index("slow B") <= 2, order

    with_pool(body, workers=1, command=FLAKY)


def test_a_requester_that_gives_up_leaves_no_work_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace"
    monkeypatch.setenv("GK_TEST_TRACE", str(trace))

    async def body(pool: AnalysisPool) -> None:
        tasks = [
            asyncio.create_task(pool.analyse(f"slow {i}", "/proj", client="A")) for i in range(5)
        ]
        await _first_started(trace)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pool.pending() == 0
        await pool.analyse("echo next", "/proj", client="B")
        await asyncio.sleep(0.3)  # time for a leftover job to begin, were there one
        assert _started(trace) == ["slow 0"]  # the one in progress; the other four never ran

    with_pool(body, workers=1, command=FLAKY)


def test_confirmation_of_a_plain_command_adds_nothing() -> None:
    async def body(pool: AnalysisPool) -> None:
        a = await pool.analyse("npm test && git status", "/proj")
        assert await pool.confirm(a) == ()
        assert pool.cached_confirmation("npm test && git status") == ()

    with_pool(body)


def test_confirmation_of_a_misread_command_asks() -> None:
    # tree-sitter takes the second heredoc line for the delimiter; bash joins it with the
    # backslash-newline before it and reads `after` as part of the document.
    command = "cat <<EOF\nline \\\nEOF\nrm -rf x\nEOF\n"

    async def body(pool: AnalysisPool) -> None:
        a = await pool.analyse(command, "/proj")
        (extra,) = await pool.confirm(a)
        assert extra.floor == "ask"
        assert "bash may read this differently" in (extra.note or "")

    with_pool(body)


def test_the_daemon_survives_a_parser_crash(tmp_path: Path) -> None:
    where = short_dir()
    config = ServeConfig(
        socket_path=where / "s.sock",
        policy_dir=make_policy_dir(where),
        default_agent="tester",
        approvers_need_tty=False,
    )
    with ThreadDaemon(config) as d:
        asyncio.run_coroutine_threadsafe(d.daemon.analyser.close(), d.loop).result(10)
        d.daemon.analyser = d.daemon.requests.analyser = AnalysisPool(timeout=1.0, command=FLAKY)
        c = Raw(config.socket_path)
        try:
            c.send(id=1, op="check", command="crash me", cwd="/tmp")
            reply = c.recv()
            assert reply["decision"] == "ask"
            assert reply["parts"][0]["note"] == "the command could not be analysed safely"
            c.send(id=2, op="check", command="echo still here", cwd="/tmp")
            assert c.recv()["decision"] == "allow"
        finally:
            c.close()
