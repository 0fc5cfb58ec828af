"""The independent readers: bash's own parser (then mvdan/sh) confirming the walk's reading."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.readers import Readers, StreamingPrinter, find_shfmt
from gatekeeper.shell import analyse
from gatekeeper.shell.reading import Reading, Record

EVERYDAY = json.loads((Path(__file__).parent / "data" / "everyday_commands.json").read_text())


@pytest.fixture(scope="module")
def readers() -> Iterator[Readers]:
    r = Readers(prestart=1)
    yield r
    r.close()


def test_the_readers_are_installed(readers: Readers) -> None:
    assert readers.missing is None
    assert find_shfmt() is not None


def test_everyday_commands_read_the_same_by_every_reader(readers: Readers) -> None:
    """The measure of false asks: on the everyday corpus bash and gatekeeper never differ."""
    differ = []
    for command in EVERYDAY:
        extra = readers.confirm(analyse(command, "/proj", "/home/u"))
        if extra:
            differ.append((command, extra[0].note))
    assert differ == []


@pytest.mark.parametrize(
    "command",
    [
        # tree-sitter and bash disagree: each of these is read differently by bash
        "cat <<EOF\nline \\\nEOF\nEOF\nrm -rf x",
        "cat <<A <<B\na\nA\nb\nB",
        "npm test `echo $HOME` `evil`",
    ],
)
def test_what_bash_reads_differently_is_caught(readers: Readers, command: str) -> None:
    (extra,) = readers.confirm(analyse(command, "/proj"))
    assert extra.floor == "ask"
    assert (extra.note or "").startswith("bash may read this differently from gatekeeper")


def test_a_forged_reading_is_refused(readers: Readers) -> None:
    """The readers compare with what the walk says, not with themselves: a wrong reading of a
    line (one command missing) is a disagreement."""
    text = "echo a; evil b"
    wrong = Reading((Record((), ("echo", "a")),))
    verdict = readers.verdict(text, wrong)
    assert not verdict.agrees
    assert "evil b" in verdict.why


def test_reading_runs_nothing(readers: Readers, tmp_path: Path) -> None:
    marks = [tmp_path / f"m{i}" for i in range(6)]
    text = (
        f"touch {marks[0]}; echo $(touch {marks[1]}) `touch {marks[2]}` <(touch {marks[3]})\n"
        f"cat <<EOF\n$(touch {marks[4]})\nEOF\n"
        f"x=${{y:-$(touch {marks[5]})}}"
    )
    readers.reading(text)
    assert [m for m in marks if m.exists()] == []


def test_a_text_that_swallows_the_end_times_out_quickly_and_the_next_works() -> None:
    printer = StreamingPrinter(["bash", "--noprofile", "--norc", "--pretty-print"], timeout=0.3)
    try:
        began = time.monotonic()
        assert printer.run(b"cat <<EOF\nno end", 5) is None  # the sentinel became body text
        assert time.monotonic() - began < 2
        assert printer.run(b"echo ok", 5) == (0, b"echo ok\n", b"")
        status, _out, err = printer.run(b"if then fi", 5) or (0, b"", b"")
        assert status != 0
        assert b"syntax error" in err
        assert printer.run(b"echo again", 5) == (0, b"echo again\n", b"")
    finally:
        printer.close()


def test_a_bash_without_pretty_print_means_ask(tmp_path: Path) -> None:
    old_bash = tmp_path / "bash"
    old_bash.write_text("#!/bin/sh\necho 'bash: --pretty-print: invalid option' >&2\nexit 2\n")
    old_bash.chmod(old_bash.stat().st_mode | stat.S_IEXEC)
    r = Readers(bash=str(old_bash))
    try:
        assert r.missing is not None
        assert "5.2" in r.missing
        (extra,) = r.confirm(analyse("echo hi", "/p"))
        assert extra.floor == "ask"
        assert r.missing in (extra.note or "")
    finally:
        r.close()


def test_a_missing_shfmt_means_ask(tmp_path: Path) -> None:
    r = Readers(shfmt=str(tmp_path / "no-such-shfmt"))
    try:
        # plain lines need no mvdan/sh; the rest cannot be confirmed
        assert r.confirm(analyse("echo hi", "/p")) == ()
        (extra,) = r.confirm(analyse("echo 'hi there'", "/p"))
        assert extra.floor == "ask"
    finally:
        r.close()


def test_a_hung_reader_means_ask(tmp_path: Path) -> None:
    slow = tmp_path / "shfmt"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(slow.stat().st_mode | stat.S_IEXEC)
    r = Readers(shfmt=str(slow), timeout=0.5)
    try:
        began = time.monotonic()
        (extra,) = r.confirm(analyse("echo 'needs mvdan'", "/p"))
        assert extra.floor == "ask"
        assert "in time" in (extra.note or "")
        assert time.monotonic() - began < 5
    finally:
        r.close()


def test_long_texts_are_not_confirmed(readers: Readers) -> None:
    (extra,) = readers.confirm(analyse("echo " + "a" * 20_000, "/p"))
    assert "longer than" in (extra.note or "")


def test_verdicts_are_cached_per_text(tmp_path: Path) -> None:
    bash = tmp_path / "bash"
    bash.symlink_to(shutil.which("bash") or "/bin/bash")
    r = Readers(bash=str(bash))
    try:
        a = analyse("echo 'cached?'", "/p")
        assert r.confirm(a) == ()
        r.close()
        bash.unlink()  # no bash any more: a second confirmation can only come from the cache
        assert r.confirm(a) == ()
        (extra,) = r.confirm(analyse("echo 'not cached'", "/p"))  # and this one cannot
        assert extra.floor == "ask"
    finally:
        r.close()


def test_reader_processes_do_not_leak(tmp_path: Path) -> None:
    r = Readers(prestart=2)
    r.refill()
    pids = [p.pid for p in r._shfmt._ready]
    r.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
