"""Readings, and the readers that make them: the walk's, mvdan/sh's, and bash's plain print."""

from __future__ import annotations

import json
import subprocess

import pytest

from gatekeeper.readers import find_shfmt
from gatekeeper.shell import analyse
from gatekeeper.shell.canonical import simple_reading
from gatekeeper.shell.mvdan import reading_of
from gatekeeper.shell.reading import (
    EXPANSION,
    Reading,
    Record,
    Redirection,
    difference,
    heredoc_data,
    normal_fd,
)


def pretty(text: str) -> str:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "--pretty-print"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()


def mvdan(text: str) -> Reading:
    """mvdan/sh's reading of bash's print of ``text`` (what gatekeeper.readers does)."""
    printed = pretty(text).encode()
    shfmt = find_shfmt()
    assert shfmt is not None
    out = subprocess.run(
        [shfmt, "--to-json", "-ln", "bash"], input=printed, capture_output=True, check=True
    ).stdout
    return reading_of(json.loads(out), printed)


def walk(text: str) -> Reading:
    (source, *_) = analyse(text, "/p", "/h").sources
    return source.reading


# --------------------------------------------------------------------------------------------
# reading.py


def test_difference_is_none_for_the_same_multiset_in_another_order() -> None:
    a = Record((), ("a",))
    b = Record((), ("b",), (Redirection("1", ">", "f"),))
    assert difference(Reading((a, b)), Reading((b, a))) is None


def test_difference_names_what_differs() -> None:
    ours = Reading((Record((), ("echo", "x")),))
    theirs = Reading((Record((), ("echo", "x")), Record((), ("rm", "-rf", "/"))))
    assert difference(ours, theirs) == "bash also reads `rm -rf /`"
    assert difference(theirs, ours) == "bash does not read `rm -rf /`"
    other = Reading((Record((), ("echo", "y")),))
    assert "where bash reads `echo y`" in (difference(ours, other) or "")


def test_a_duplicate_command_is_a_difference() -> None:
    a = Record((), ("a",))
    assert difference(Reading((a,)), Reading((a, a))) is not None


@pytest.mark.parametrize(
    ("body", "strip", "quoted", "data"),
    [
        ("a\nb\n", False, False, "a\nb"),
        ("a \\\nb\n", False, False, "a b"),
        ("a \\\nb\n", False, True, "a \\\nb"),
        ("a\\\\\nb\n", False, False, "a\\\\\nb"),
        ("\ta\n\t\tb\n", True, False, "a\nb"),
        ("a\\\n\tb\n", True, False, "a\tb"),
    ],
)
def test_heredoc_data(body: str, strip: bool, quoted: bool, data: str) -> None:
    assert heredoc_data(body, strip_tabs=strip, quoted=quoted) == data


def test_default_descriptors_are_spelled_out() -> None:
    assert [normal_fd("", op) for op in (">", ">>", ">&", "<", "<<<", "&>")] == [
        "1", "1", "1", "0", "0", "",
    ]  # fmt: skip
    assert normal_fd("2", ">") == "2"


# --------------------------------------------------------------------------------------------
# canonical.py: bash's print of a plain line


@pytest.mark.parametrize(
    "text",
    [
        "npm test",
        "a; b",
        "a\nb",
        "a && b || c & d",
        "a |& b",
        "CI=1 npm test --reporter=dot",
        "x=1",
        "a 2>&1 >out",
        "a >>x <y",
        "a >|x 2>/dev/null",
        "! a",
        "a &",
        "git log -n 5 -- src/app.py",
    ],
)
def test_a_plain_print_reads_as_the_walk_and_mvdan_read_it(text: str) -> None:
    plain = simple_reading(pretty(text))
    assert plain is not None, pretty(text)
    assert difference(walk(text), plain) is None
    assert difference(mvdan(text), plain) is None


@pytest.mark.parametrize(
    "text",
    [
        "echo 'a b'",
        'echo "$HOME"',
        "echo $x",
        "ls *.py",
        "cat <<EOF\nx\nEOF",
        "if a; then b; fi",
        "f() { a; }",
        "(a)",
        "{ a; }",
        "a $(b)",
        "echo a\\ b",
        "time a",
        "echo ~",
        "echo {a,b}",
        "[ -f x ]",
    ],
)
def test_anything_else_is_not_plain(text: str) -> None:
    assert simple_reading(pretty(text)) is None, pretty(text)


def test_a_dangling_operator_is_not_plain() -> None:
    assert simple_reading("a |\nb") is None
    assert simple_reading("a ; ; b") is None


# --------------------------------------------------------------------------------------------
# mvdan.py: the second reader agrees with the walk on what both can read


@pytest.mark.parametrize(
    "text",
    [
        "echo 'a'\"b\" $(ls -l | wc) > out 2>&1",
        "cat <<EOF | sh\nhello $(whoami)\nEOF",
        "cat <<-EOF\n\ta\n\tEOF",
        "cat <<'EOF'\n$x\nEOF",
        "cat <<EOF > config.json\n{}\nEOF",
        "python3 - <<'PY'\nprint(1)\nPY",
        "[ -f x ] && echo y",
        "f() { echo hi; } > log",
        'x=1 y=$(z) cmd arg <<< "here"',
        "if true; then :; fi; for i in 1 2; do echo $i; done; case x in a) b;; esac",
        "echo `date` ${x:-$(y)}",
        'declare -x A=1 B "c" d=(1 2)',
        "time ls | wc",
        'echo $"hi $x"',
        "echo a\\ b ~/x *.py {a,b}",
        "((1+2)); [[ -n $x ]]",
        "{ ls; } > out; (cd a; ls) &",
        "echo >&2 hi; exec 3>&-",
        "git commit -F- <<EOF\nfix: typo\n\nSee #12\nEOF",
    ],
)
def test_mvdan_reads_bashs_print_as_the_walk_reads_the_line(text: str) -> None:
    assert difference(walk(text), mvdan(text)) is None


def test_signatures_keep_values_and_mark_expansions() -> None:
    (record,) = walk("echo 'a b' \"c$HOME\" $'\\x41' \\d").records
    assert record.words == ("echo", "a b", "c" + EXPANSION, "A", "d")
    (theirs,) = mvdan("echo 'a b' \"c$HOME\" $'\\x41' \\d").records
    assert theirs.words == record.words
