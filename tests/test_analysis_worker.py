"""The analysis worker: a parser crash or hang costs one "ask", never the daemon."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.analysis_worker import IsolatedAnalyser
from gatekeeper.errors import BadInput
from gatekeeper.server import ServeConfig
from gatekeeper.shell import analyse
from tests.daemon_util import Raw, ThreadDaemon, make_policy_dir, short_dir

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
    def analyse(command, cwd, home):
        if command == "crash me":
            os.kill(os.getpid(), signal.SIGSEGV)
        if command == "hang me":
            time.sleep(60)
        return real(command, cwd, home)
    w.analyse = analyse
    sys.exit(main())
    """
)


@pytest.fixture
def analyser() -> Iterator[IsolatedAnalyser]:
    a = IsolatedAnalyser()
    yield a
    a.close()


@pytest.fixture
def flaky() -> Iterator[IsolatedAnalyser]:
    a = IsolatedAnalyser(timeout=1.0, command=[sys.executable, "-c", FLAKY_WORKER])
    yield a
    a.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_the_worker_agrees_with_the_parser(analyser: IsolatedAnalyser, command: str) -> None:
    assert analyser(command, "/proj", "/home/u").parts == analyse(command, "/proj", "/home/u").parts


def test_bad_input_is_refused_before_the_worker(analyser: IsolatedAnalyser) -> None:
    with pytest.raises(BadInput):
        analyser("ls\x00rm", "/proj")
    with pytest.raises(BadInput):
        analyser(b"ls \xff", "/proj")


def test_a_killed_worker_is_replaced(analyser: IsolatedAnalyser) -> None:
    analyser("ls", "/proj")
    proc = analyser._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    parts = analyser("ls -la", "/proj").parts
    assert [p.subject for p in parts] == ["ls -la"]
    assert analyser._proc is not None
    assert analyser._proc.pid != proc.pid


def test_a_crash_asks_and_the_next_command_works(flaky: IsolatedAnalyser) -> None:
    (part,) = flaky("crash me", "/proj").parts
    assert (part.floor, part.note) == ("ask", "the command could not be analysed safely")
    assert flaky.restarts == 1
    assert [p.subject for p in flaky("echo ok", "/proj").parts] == ["echo ok"]


def test_a_hang_asks_within_the_timeout(flaky: IsolatedAnalyser) -> None:
    (part,) = flaky("hang me", "/proj").parts
    assert part.floor == "ask"
    assert [p.subject for p in flaky("echo ok", "/proj").parts] == ["echo ok"]


def test_the_daemon_survives_a_parser_crash(tmp_path: Path) -> None:
    where = short_dir()
    config = ServeConfig(
        socket_path=where / "s.sock",
        policy_dir=make_policy_dir(where),
        default_agent="tester",
        approvers_need_tty=False,
    )
    with ThreadDaemon(config) as d:
        d.daemon.analyser.close()
        d.daemon.analyser = IsolatedAnalyser(
            timeout=1.0, command=[sys.executable, "-c", FLAKY_WORKER]
        )
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
