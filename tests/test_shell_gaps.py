"""The grammar gaps the red team found, each tested as a class of spellings against real bash.

For every spelling, bash runs the line in the oracle sandbox (tests/bash_oracle.py) and shows
what it really executed and wrote; the walk alone (no independent readers: the gap is fixed
where it lives) must either ask or have found every such program and write as a part.
"""

from __future__ import annotations

import itertools
import os
import posixpath
from collections.abc import Iterator

import pytest

from gatekeeper.engine import decide_command, decide_part
from gatekeeper.policy import Policy, parse_policy
from gatekeeper.shell import Part, analyse
from tests.bash_oracle import Observed, Sandbox, can_unshare

POLICY = """\
---
permission:
  bash:
    "*": ask
    "echo *": allow
    "cat *": allow
    "grep *": allow
    "npm*": allow
    "go*": allow
    "[ *": allow
    "test *": allow
    "sort *": allow
    "git diff*": allow
    "git log*": allow
    "tar *": allow
    "cp *": allow
    "sed *": allow
    "bash -c *": allow
    "./gradlew *": allow
    "./scripts/*": allow
  write:
    "*": ask
    "out/*": allow
  external_directory:
    "*": ask
---
"""

# Root (CI) must be able to sandbox: only a user without the rights skips.
needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 and not can_unshare(), reason="needs unshare -n (root)"
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, "gaps.md", "gaps")


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    b = Sandbox()
    yield b
    b.close()


def walk_decides(policy: Policy, box: Sandbox, line: str) -> str:
    return decide_command(policy, line, str(box.proj), str(box.home)).decision


def unseen(policy: Policy, box: Sandbox, line: str, seen: Observed) -> list[str]:
    """What bash did that the walk neither found as a part nor was allowed to do."""
    analysis = analyse(line, str(box.proj), str(box.home))
    commands = {p.subject for p in analysis.parts if p.permission == "bash"}
    writes = {p.subject for p in analysis.parts if p.permission == "write"}
    out = []
    for argv in seen.executed:
        subject = " ".join([posixpath.basename(argv[0]), *argv[1:]])
        if subject not in commands and decide_part(policy, Part("bash", subject)).decision != (
            "allow"
        ):
            out.append(f"ran {argv!r}")
    for path in seen.written:
        rel = posixpath.relpath(path, box.proj)
        if rel not in writes and path not in writes:
            out.append(f"wrote {rel}")
    return out


def agrees_with_bash(policy: Policy, box: Sandbox, line: str) -> None:
    """The walk alone is right about ``line``: it asks, or bash did nothing it did not see."""
    if walk_decides(policy, box, line) != "allow":
        return
    assert unseen(policy, box, line, box.run(line)) == [], line


# --------------------------------------------------------------------------------------------
# Here-documents: boundaries exactly as bash finds them


def heredoc_spellings() -> Iterator[str]:
    trick_bodies = [
        "line \\\nEOF\nevil 1",  # a continuation joins the delimiter line to the body
        "EO\\\nF\nevil 2",  # a continuation makes the delimiter line
        "a\\\\\nEOF\nevil 3",  # an escaped backslash: the delimiter ends it after all
        "\tEOF\nevil 4",  # a tab before the delimiter: only <<- strips it
        "EOF \nevil 5",  # a blank after it: not the delimiter
        "${X:-\nEOF\nevil 6\n}",  # an expansion left open across the delimiter line
        "$(\nEOF\nevil 7\n)",
        "`\nEOF\nevil 8\n`",
    ]
    for op, delim, body in itertools.product(
        ["<<", "<<-"], ["EOF", "'EOF'", '"EOF"', "\\EOF", "E'O'F"], trick_bodies
    ):
        yield f"cat {op}{delim}\n{body}\nEOF\necho after"
    yield "cat <<EOF\nnever closes\nevil 9"
    yield "cat <<EOF\nEOF"
    yield "cat <<EOF\n\\\nEOF\nevil 10\nEOF"


@needs_sandbox
@pytest.mark.parametrize("line", list(heredoc_spellings()))
def test_heredoc_boundaries_are_bashs(policy: Policy, box: Sandbox, line: str) -> None:
    agrees_with_bash(policy, box, line)


@pytest.mark.parametrize(
    "line",
    [
        "cat <<EOF\nline \\\nEOF\nEOF\nrm -rf x",
        "cat <<EOF\nEO\\\nF\nrm -rf x\nEOF",
        "cat <<EOF\nnever closes",
    ],
)
def test_heredocs_bash_ends_elsewhere_ask(line: str) -> None:
    assert any(p.floor == "ask" for p in analyse(line, "/p").parts)


def test_a_heredoc_fed_to_a_shell_is_the_text_bash_gives_it() -> None:
    # In an unquoted body `\\` is one backslash: bash runs `echo a\;rm x` → echo "a;rm" x …
    # but `a\\\;` is `a\` then `;`: rm runs. The script is the expanded body.
    subjects = [p.subject for p in analyse("bash <<EOF\necho a\\\\\\;rm x\nEOF", "/p").parts]
    assert "rm x" in subjects


# --------------------------------------------------------------------------------------------
# `[` and `test` are ordinary commands


BRACKET_OPERATORS = ["|", "&", ";", "&&", "||", "|&", "<", ">", ">>", "2>", "&>", "<>"]


@needs_sandbox
@pytest.mark.parametrize(("op", "close"), list(itertools.product(BRACKET_OPERATORS, [" ]", ""])))
def test_operators_inside_brackets_are_shell_syntax(
    policy: Policy, box: Sandbox, op: str, close: str
) -> None:
    for target in ("evil x", "out/w", "../outside/w"):
        agrees_with_bash(policy, box, f"[ a {op} {target}{close}")
        agrees_with_bash(policy, box, f"test a {op} {target}{close}")


def test_a_bracket_pipe_runs_the_command_after_it() -> None:
    subjects = [p.subject for p in analyse("echo a; [ x | rm -rf / ]", "/p").parts]
    assert "rm -rf / ]" in subjects


def test_a_bracket_redirection_is_a_write() -> None:
    parts = analyse("[ x > /etc/passwd ]", "/p").parts
    assert Part("write", "/etc/passwd") in parts


# --------------------------------------------------------------------------------------------
# `-v` with a subscript, in every quoting


def subscript_spellings() -> Iterator[str]:
    for test in ("[ -v {} ]", "test -v {}", "[[ -v {} ]]"):
        for word in (
            "'a[$(evil v)]'",
            '"a[\\$(evil v)]"',
            "$'a[$(evil v)]'",
            "a\\[\\$\\(evil\\ v\\)\\]",
            "\"a[\"'$(evil v)]'",
            "$'a\\x5b$(evil v)]'",
        ):
            yield test.format(word)


@pytest.mark.parametrize("line", list(subscript_spellings()))
def test_v_with_a_subscript_never_allows(policy: Policy, line: str) -> None:
    assert decide_command(policy, line, "/p").decision == "ask", line


@needs_sandbox
@pytest.mark.parametrize("line", list(subscript_spellings())[:6])
def test_v_with_a_subscript_really_runs_code(box: Sandbox, line: str) -> None:
    """The reason for the rule: bash does run the subscript (checked, not assumed). The
    sandbox hides the builtin `[` and `test` behind stand-ins: this line brings them back."""
    assert ["evil", "v"] in box.run(f"enable test '['; a=(1); {line}").executed


@pytest.mark.parametrize(
    "line",
    [
        "read 'a[$(evil)]' <<< x",
        "a=(1); unset 'a[$(evil)]'",
        "printf -v 'a[$(evil)]' x",
        "declare -n r='a[$(evil)]'",
        'local -n r="a[\\$(evil)]"',
    ],
)
def test_builtins_that_evaluate_a_name_ask(policy: Policy, line: str) -> None:
    assert any(p.floor == "ask" for p in analyse(line, "/p").parts), line


# --------------------------------------------------------------------------------------------
# A command word that is a path is not the program a bare-name rule names


@pytest.mark.parametrize(
    "line",
    [
        "npm/../../bin/rm -rf x",
        "npm/../bin/evil",
        "go/x",
        "npmx/../evil",
        "./npm",
        "npm/",
        "./scripts/../../bin/evil",
        "./scripts/../x",
    ],
)
def test_path_command_words_ask_under_bare_name_rules(policy: Policy, line: str) -> None:
    decision = decide_command(policy, line, "/p")
    assert decision.decision == "ask", (line, decision.reason)


@pytest.mark.parametrize("line", ["./gradlew build", "./scripts/build.sh", "npm test", "go vet"])
def test_rules_that_name_the_path_still_allow(policy: Policy, line: str) -> None:
    assert decide_command(policy, line, "/p").decision == "allow", line


# --------------------------------------------------------------------------------------------
# What changes how bash reads the rest of the input


@pytest.mark.parametrize(
    "line",
    [
        "LC_ALL=zh_TW.BIG5; echo hi",
        "LC_ALL=C\necho hi",
        "LANG=ja_JP.SJIS; echo hi",
        "export LC_ALL=zh_CN.GBK; echo hi",
        "declare LC_CTYPE=big5; echo hi",
        "readonly LANG=C; echo hi",
        "shopt -s extglob\necho @(a|b)",
        "shopt -s expand_aliases; alias echo=evil",
        "set -o posix; echo hi",
        "set -k; echo a=b",
        "enable -n echo; echo hi",
        "POSIXLY_CORRECT=1; echo hi",
    ],
)
def test_parse_state_changes_ask(policy: Policy, line: str) -> None:
    assert decide_command(policy, line, "/p").decision == "ask", line


@pytest.mark.parametrize(
    "line",
    [
        "LC_ALL=C echo hi",
        "LANG=C.UTF-8 npm test",
        "set -euo pipefail; echo hi",
        "set -x",
        "set -e -o pipefail",
        "set -- a b",
        "shopt -q extglob",
    ],
)
def test_harmless_forms_are_left_to_the_rules(line: str) -> None:
    assert all(p.floor == "allow" for p in analyse(line, "/p").parts), line


# --------------------------------------------------------------------------------------------
# Options that write files are writes


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ("sort -o notes.txt in", "notes.txt"),
        ("sort -onotes.txt in", "notes.txt"),
        ("sort -no notes.txt in", "notes.txt"),
        ("sort --output=notes.txt in", "notes.txt"),
        ("sort --output notes.txt in", "notes.txt"),
        ("sort --out=notes.txt in", "notes.txt"),
        ("git diff --output=notes.txt", "notes.txt"),
        ("git diff --output notes.txt", "notes.txt"),
        ("git -C sub diff --output=d.txt", "sub/d.txt"),
        ("git --no-pager log --output=/tmp/l", "/tmp/l"),
        ("git format-patch -o patches HEAD~1", "patches"),
        ("tar czf backup.tgz src", "backup.tgz"),
        ("tar -cvf backup.tar src", "backup.tar"),
        ("tar --create --file=b.tar src", "b.tar"),
        ("cp a.txt notes.txt", "notes.txt"),
        ("cp -t dest a b", "dest"),
        ("mv a.txt b.txt", "b.txt"),
        ("sed -i 's/a/b/' src/app.py", "src/app.py"),
        ("sed -e 's/a/b/' -i src/app.py", "src/app.py"),
        ("perl -pi -e 's/a/b/' src/app.py", "src/app.py"),
        ("gcc -o hello hello.c", "hello"),
        ("go build -o bin/app ./cmd", "bin/app"),
        ("python3 -m pytest --junitxml=report.xml", "report.xml"),
        ("npx jest --outputFile=r.json", "r.json"),
        ("curl -sSLo page.html https://x", "page.html"),
        ("find . -fprint list.txt", "list.txt"),
        ("black src", "src"),
    ],
)
def test_options_that_write_are_writes(line: str, written: str) -> None:
    writes = {p.subject for p in analyse(line, "/p", "/h").parts if p.permission == "write"}
    assert written in writes, (line, writes)


@pytest.mark.parametrize(
    "line",
    [
        "sort in",
        "sort -n -k2 in",
        "tar xzf backup.tgz",
        "tar -tvf backup.tar",
        "git diff --stat",
        "sed 's/a/b/' f",
        "black --check src",
        "gcc -O2 -c x.c",
        "cp -t",
    ],
)
def test_options_that_only_read_are_not_writes(line: str) -> None:
    assert not [p for p in analyse(line, "/p", "/h").parts if p.permission == "write"], line


@needs_sandbox
@pytest.mark.parametrize(
    "line",
    [
        "sort -o ../outside/s README.md",
        "sort -no ../outside/s README.md",
        "sort --out=../outside/s README.md",
        "sort --output ../outside/s README.md",
    ],
)
def test_sort_really_writes_where_the_walk_says(policy: Policy, box: Sandbox, line: str) -> None:
    seen = box.run(line)
    assert seen.written, line
    assert unseen(policy, box, line, seen) == [], line
    assert walk_decides(policy, box, line) == "ask"


# --------------------------------------------------------------------------------------------
# What a red team found in the walk's model of commands (each verified under real bash)


@pytest.mark.parametrize(
    "line",
    [
        "bash -c -k 'bash -c true BASH_ENV=out/a.log'",
        "bash -c -O extglob '!(true)'",
        "bash -O extglob -c 'echo @(a|b)'",
        "sh -o posix -c true",
        "bash -c -l true",
        "bash -i -c true",
        "bash --login -c true",
        "bash --rcfile x -c true",
        "bash -kc 'true'",
    ],
)
def test_shell_options_that_change_how_the_script_is_read_ask(policy: Policy, line: str) -> None:
    assert decide_command(policy, line, "/p").decision == "ask", line


@pytest.mark.parametrize(
    "line", ["bash -c true", "bash -e -c true", "bash -euxo pipefail -c true", "sh -c 'echo hi'"]
)
def test_common_shell_options_are_left_to_the_rules(line: str) -> None:
    assert all(p.floor == "allow" for p in analyse(line, "/p").parts), line


@needs_sandbox
@pytest.mark.parametrize(
    "line",
    [
        "cd() { true; }; cd out && echo pwn > README.md",
        "cd out && true() { echo pwn > README.md; } && cd .. && true",
        "pushd -n out && echo pwn > README.md",
        "pushd out && pushd +1 && echo pwn > README.md",
        "cd out && command cd .. && echo pwn > x",
        "cd out && builtin cd .. && echo pwn > y",
        "f() { cd ..; }; cd out && f && echo pwn > z",
    ],
)
def test_directories_follow_functions_and_the_directory_stack(
    policy: Policy, box: Sandbox, line: str
) -> None:
    agrees_with_bash(policy, box, line)
    assert walk_decides(policy, box, line) == "ask", line


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("sort -S 1K --compress-program=evil x", "sort --compress-program"),
        ("sort --compress=evil x", "sort --compress"),
        ("tar -I evil -cf out/a.tar src", "tar -I"),
        ("tar --to-command=evil -xf a.tar", "tar --to-command"),
        ("rsync -e evil a host:b", "rsync -e"),
        ("ssh -o ProxyCommand=evil host", "ssh -o"),
        ("git -c core.pager=evil log", "git -c"),
        ("git difftool -y --extcmd=evil", "git difftool --extcmd"),
        ("git difftool -yx evil", "git difftool -yx"),
        ("git rebase -x evil HEAD~1", "git rebase -x"),
        ("git grep -O evil x", "git grep -O"),
        ("git submodule foreach evil", "git submodule foreach"),
        ("mapfile -C evil -c 1 arr", "mapfile -C"),
        ("zip -TT evil a.zip x", "zip -TT"),
    ],
)
def test_options_that_run_another_program_ask(line: str, why: str) -> None:
    notes = [p.note or "" for p in analyse(line, "/p").parts if p.floor == "ask"]
    assert any(why in n and "runs another program" in n for n in notes), (line, notes)


@pytest.mark.parametrize(
    "line",
    [
        "sed -n '1e rm x' f",
        "sed '1!e rm x' f",
        "sed '/a/,/b/e date' f",
        "sed 's/a/b/e' f",
        "sed 's|a|b|ge' f",
        "sed 's/a/b/w out' f",
        "sed '/foo/w bar' f",
        "sed -e p -e 'W out' f",
        "sed --expression='$e evil' f",
        "sed -n -e1e\\ evil f",
    ],
)
def test_sed_scripts_that_run_or_write_ask(line: str) -> None:
    assert any(p.floor == "ask" for p in analyse(line, "/p").parts), line


@pytest.mark.parametrize(
    "line",
    ["sed -n '1,40p' f", "sed 's/a/b/g' f", "sed -e '/x/d' -e 's/e/E/g' f", "sed 's/e/w/' f"],
)
def test_plain_sed_scripts_do_not(line: str) -> None:
    assert all(p.floor == "allow" for p in analyse(line, "/p").parts), line


@pytest.mark.parametrize(
    "line",
    [
        "printf -v HOME %s out",
        "printf -vPS4 %s x",
        "printf '-va[$(rm -rf x)]' %s x",
        "printf -v'a[$(rm -rf x)]' %s x",
        "read PATH <<< /tmp",
        "read -a PATH <<< x",
        "read -r IFS <<< x",
        "getopts ab OPTIND",
        "mapfile PATH < f",
        "for PATH in /tmp; do ls; done",
        "select CDPATH in a; do break; done",
        "f() { local PATH=/tmp; ls; }",
        "f() { local LC_ALL=zh_TW.BIG5; }",
        "read http_proxy <<< x",
    ],
)
def test_builtins_and_loops_that_set_shell_variables_ask(line: str) -> None:
    assert any(p.floor == "ask" for p in analyse(line, "/p").parts), line


@pytest.mark.parametrize(
    "line",
    [
        "read -r line < f",
        "printf -v out %s x",
        "for f in *.py; do echo $f; done",
        "f() { local x=1; echo $x; }",
        "while read -r a b; do echo $a; done < f",
    ],
)
def test_lower_case_variables_are_the_scripts_own(line: str) -> None:
    assert all(p.floor == "allow" for p in analyse(line, "/p").parts), line


@needs_sandbox
def test_printf_v_with_an_attached_subscript_really_runs_code(box: Sandbox) -> None:
    seen = box.run("enable printf; a=(1); printf '-va[$(evil p)]' %s x")
    assert ["evil", "p"] in seen.executed


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ("sort --o=README.md notes.txt", "README.md"),
        ("sort --o README.md notes.txt", "README.md"),
        ("git diff-tree -p --output=README.md HEAD~ HEAD", "README.md"),
        ("git diff-index --output=x HEAD", "x"),
        ("git difftool --output=y", "y"),
    ],
)
def test_more_options_that_write(line: str, written: str) -> None:
    writes = {p.subject for p in analyse(line, "/p", "/h").parts if p.permission == "write"}
    assert written in writes, (line, writes)
