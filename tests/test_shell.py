"""The shell walker: command line → the parts bash really runs, writes and visits (§3)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.errors import BadInput
from gatekeeper.shell import Part, analyse, check_input, decode_ansi_c

ROOT = "/proj"
HOME = "/home/dev"


def parts(command: str, cwd: str = ROOT) -> tuple[Part, ...]:
    return analyse(command, cwd, HOME).parts


def commands(command: str) -> list[str]:
    """Subjects of the bash parts, in order."""
    return [p.subject for p in parts(command) if p.permission == "bash"]


def floors(command: str) -> dict[str, str]:
    return {p.subject: p.floor for p in parts(command) if p.permission == "bash"}


def writes(command: str, cwd: str = ROOT) -> list[str]:
    return sorted(p.subject for p in parts(command, cwd) if p.permission == "write")


def external(command: str) -> list[str]:
    return sorted(p.subject for p in parts(command) if p.permission == "external_directory")


def never_allowed(command: str) -> bool:
    return any(p.floor != "allow" for p in parts(command))


# --------------------------------------------------------------------------------------------
# Every way bash runs a command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("a; b", ["a", "b"]),
        ("a && b", ["a", "b"]),
        ("a || b", ["a", "b"]),
        ("a & b", ["a", "b"]),
        ("a | b", ["a", "b"]),
        ("a |& b", ["a", "b"]),
        ("a\nb", ["a", "b"]),
        ("a && b || c; d | e & f", ["a", "b", "c", "d", "e", "f"]),
        ("(a; b)", ["a", "b"]),
        ("{ a; b; }", ["a", "b"]),
        ("! a", ["a"]),
        ("if a; then b; elif c; then d; else e; fi", ["a", "b", "c", "d", "e"]),
        ("for i in x y; do a; done", ["a"]),
        ("for ((i=0; i<3; i++)); do a; done", ["a"]),
        ("select i in x; do a; done", ["a"]),
        ("while a; do b; done", ["a", "b"]),
        ("until a; do b; done", ["a", "b"]),
        ("case x in y) a;; z|w) b;; esac", ["a", "b"]),
        ("f() { a; }", ["a"]),
        ("function f { a; }", ["a"]),
        ("function f() ( a )", ["a"]),
    ],
)
def test_control_structures(command: str, expected: list[str]) -> None:
    assert commands(command) == expected


@pytest.mark.parametrize(
    "command",
    [
        "echo $(rm -rf x)",
        "echo `rm -rf x`",
        "echo `echo \\`rm -rf x\\``",
        "echo `echo \\`echo \\\\\\`rm -rf x\\\\\\`\\``",
        'echo "`rm -rf x`"',
        'echo "$(rm -rf x)"',
        "echo $(echo $(echo $(rm -rf x)))",
        "cat <(rm -rf x)",
        "tee >(rm -rf x)",
        "echo > >(rm -rf x)",
        "echo ${X:-$(rm -rf x)}",
        "echo $(( $(rm -rf x) + 1 ))",
        "(( $(rm -rf x) ))",
        "[[ -n $(rm -rf x) ]]",
        "[ -n `rm -rf x` ]",
        "a[$(rm -rf x)]=1",
        "X=$(rm -rf x)",
        "X=$(rm -rf x) echo",
        "local y=`rm -rf x`",
        "export Y=$(rm -rf x)",
        "for i in $(rm -rf x); do :; done",
        "case $(rm -rf x) in *) :;; esac",
        "echo hi <<< $(rm -rf x)",
        "echo hi > $(rm -rf x)",
        "cat <<EOF\n$(rm -rf x)\nEOF",
        "cat <<EOF\n`rm -rf x`\nEOF",
        "cat <<EOF\nsome $Y `rm -rf x` more\nEOF",
        "cat <<EOF\n${Y:-$(rm -rf x)}\nEOF",
        "cat <<-EOF\n\t$(rm -rf x)\n\tEOF",
        "cat <<-EOF\n\t`rm -rf x`\n\tEOF",
        "cat <<EOF && true\n$(rm -rf x)\nEOF",
    ],
)
def test_substitutions_are_commands_of_their_own(command: str) -> None:
    assert "rm -rf x" in commands(command), parts(command)


def test_nested_backticks_follow_bash_unescaping() -> None:
    # bash turns \` into ` inside backticks and parses again: the inner rm runs.
    assert commands("echo `echo \\`rm x\\``") == ["rm x", "echo `rm x`", "echo `echo \\`rm x\\``"]
    # Inside double quotes, \" is unescaped too.
    assert 'echo "q"' in commands('echo "`echo \\"q\\"`"') or "echo q" in commands(
        'echo "`echo \\"q\\"`"'
    )


@pytest.mark.parametrize(
    "command",
    [
        "cat <<'EOF'\n$(rm -rf x)\n`rm -rf x`\nEOF",
        'cat <<"EOF"\n$(rm -rf x)\nEOF',
        "cat <<\\EOF\n$(rm -rf x)\nEOF",
        "cat <<E\\OF\n$(rm -rf x)\nEOF",
        "cat <<-'EOF'\n\t$(rm -rf x)\n\tEOF",
        "cat <<EOF\n\\$(rm -rf x) \\`rm -rf x\\`\nEOF",
        "echo '$(rm -rf x)'",
        "echo '`rm -rf x`'",
        'echo "\\$(rm -rf x)"',
        "echo \\$\\(rm -rf x\\)",
        "echo rm -rf x",
        "# rm -rf x",
        "echo a # $(rm -rf x)",
    ],
)
def test_data_is_not_run(command: str) -> None:
    assert "rm -rf x" not in commands(command), parts(command)


@pytest.mark.parametrize(
    "command",
    [
        "bash <<EOF\nrm -rf x\nEOF",
        "bash <<'EOF'\nrm -rf x\nEOF",
        "sh <<-EOF\n\trm -rf x\n\tEOF",
        "bash <<< 'rm -rf x'",
        'zsh <<< "rm -rf x"',
        "bash -s <<< 'rm -rf x'",
        "sudo bash <<< 'rm -rf x'",
        "bash -c 'rm -rf x'",
        "bash -lc 'rm -rf x'",
        "bash -e -c 'rm -rf x'",
        "bash -o pipefail -c 'rm -rf x'",
        "sh -c 'rm -rf x' name arg",
        "zsh -c 'rm -rf x'",
        "dash -c 'rm -rf x'",
        "/bin/bash -c 'rm -rf x'",
        "busybox sh -c 'rm -rf x'",
        "bash -c \"bash -c 'rm -rf x'\"",
        "eval 'rm -rf x'",
        "eval rm -rf x",
        "eval 'eval \"rm -rf x\"'",
        "trap 'rm -rf x' EXIT",
        "su -c 'rm -rf x' root",
        "watch -n 1 rm -rf x",
        "sudo rm -rf x",
        "sudo -u root rm -rf x",
        "sudo -iu root rm -rf x",
        "sudo --user=root -E -- rm -rf x",
        "env rm -rf x",
        "env CI=1 rm -rf x",
        "env -i rm -rf x",
        "env -u X rm -rf x",
        "nice -n 5 rm -rf x",
        "nice -10 rm -rf x",
        "nohup rm -rf x",
        "timeout 5 rm -rf x",
        "timeout -k 1 5s rm -rf x",
        "time rm -rf x",
        "command rm -rf x",
        "exec rm -rf x",
        "exec -a y rm -rf x",
        "xargs rm -rf x",
        "xargs -0 rm -rf x",
        "xargs -n 1 -P 2 rm -rf x",
        "xargs -I {} rm -rf x",
        "xargs --max-args=2 rm -rf x",
        "find . -exec rm -rf x \\;",
        "find . -exec rm -rf x {} +",
        "find . -execdir rm -rf x \\;",
        "find . -ok rm -rf x \\;",
        "find . -name '*.o' -exec rm -rf x \\; -print",
        "sudo env nice timeout 5 rm -rf x",
    ],
)
def test_wrappers_and_shells_are_unwrapped(command: str) -> None:
    found = commands(command)
    assert any(c == "rm -rf x" or c.startswith("rm -rf x ") for c in found), parts(command)


def test_wrapper_itself_is_decided_too() -> None:
    assert commands("sudo -u root rm x") == ["sudo -u root rm x", "rm x"]
    assert commands("bash -c 'npm test'") == ["bash -c npm test", "npm test"]


def test_unknown_wrapper_options_ask() -> None:
    assert never_allowed("sudo --bogus rm x")
    assert never_allowed("env -S 'rm x'")
    assert never_allowed("xargs -Z rm")
    assert never_allowed('bash -c "$X"')
    assert never_allowed("eval $X")
    assert never_allowed("bash")  # reads commands from stdin we cannot see
    assert never_allowed("echo rm x | sh")
    assert never_allowed("bash -c")


def test_a_script_file_is_not_parsed_but_is_a_command() -> None:
    assert commands("bash ./build.sh") == ["bash ./build.sh"]
    assert not never_allowed("bash ./build.sh")
    # source and . are commands like any other, but what they do to the directory is unknown.
    assert commands("source ./env.sh") == ["source ./env.sh"]
    assert commands(". ./env.sh") == [". ./env.sh"]
    assert never_allowed("source ./env.sh; echo > o")


# --------------------------------------------------------------------------------------------
# Subjects: quoting removed, assignments and redirections off, single spaces


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf x",
        "'r'm -rf x",
        'r"m" -rf x',
        "r\\m -rf x",
        "\\rm -rf x",
        '"rm" "-rf" \'x\'',
        "r''m -rf x",
        "$'\\x72m' -rf x",
        "$'\\162m' -rf x",
        "$'\\u0072\\U0000006d' -rf x",
        "$'r'm -rf x",
        "r\\\nm -rf x",
        "rm \\\n  -rf \\\n  x",
        "rm   -rf\t x",
        "rm -rf x >/dev/null 2>&1",
        ">/dev/null rm -rf x",
        "rm >/dev/null -rf x",
        "CI=1 rm -rf x",
        "CI=1 NODE_ENV=test rm -rf x",
    ],
)
def test_spellings_of_one_subject(command: str) -> None:
    assert "rm -rf x" in commands(command), parts(command)


def test_line_continuation_not_removed_in_single_quotes_or_comments() -> None:
    assert commands("echo 'a\\\nb'") == ["echo a\\\nb"]
    assert commands("echo a # c \\\nrm x") == ["echo a", "rm x"]
    assert commands("true &\\\n& rm x") == ["true", "rm x"]


def test_variants_strip_directory_and_blanks() -> None:
    (p,) = [p for p in parts("/usr/bin/git push") if p.permission == "bash"]
    assert p.subject == "/usr/bin/git push"
    assert "git push" in p.variants
    (p,) = [p for p in parts("echo 'a  b'") if p.permission == "bash"]
    assert p.subject == "echo a  b"
    assert "echo a b" in p.variants


@pytest.mark.parametrize(
    "command",
    [
        "$CMD",
        "$CMD -rf x",
        "${CMD} x",
        '"$CMD" x',
        "$(echo rm) -rf x",
        "`echo rm` -rf x",
        "r$X -rf x",
        "rm${IFS}-rf x",
        "/bin/r? -rf x",
        "/bin/r* -rf x",
        "[r]m -rf x",
        "{rm,-rf,x}",
        "~/bin/rm x",
        "$'\\c?' x",
    ],
)
def test_command_name_not_static_is_never_allowed(command: str) -> None:
    assert never_allowed(command), parts(command)


def test_arguments_with_variables_keep_the_subject() -> None:
    ps = [p for p in parts("npm test $X") if p.permission == "bash"]
    assert [(p.subject, p.floor) for p in ps] == [("npm test $X", "allow")]
    ps = [p for p in parts('ls "$X" $(pwd)') if p.permission == "bash"]
    assert ("ls $X $(pwd)", "allow") in [(p.subject, p.floor) for p in ps]
    assert ("pwd", "allow") in [(p.subject, p.floor) for p in ps]
    # …but a substitution's output may be an option, and npm has options that run programs
    # (`$(echo --script-shell=./x)`): for such a command, a word the line chooses asks
    ps = [p for p in parts('npm test "$X" $(pwd)') if p.permission == "bash"]
    assert ("npm test $X $(pwd)", "ask") in [(p.subject, p.floor) for p in ps]


# --------------------------------------------------------------------------------------------
# Assignments


def test_harmless_leading_assignment_is_dropped() -> None:
    assert floors("CI=1 npm test") == {"npm test": "allow"}
    assert floors("CI=1 NODE_ENV=test RUST_LOG=debug npm test") == {"npm test": "allow"}


@pytest.mark.parametrize(
    "var",
    ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "NODE_OPTIONS", "GIT_DIR", "GIT_SSH_COMMAND",
     "GIT_CONFIG_GLOBAL", "BASH_ENV", "ENV", "IFS", "PYTHONPATH", "PYTHONSTARTUP",
     "PYTEST_ADDOPTS", "PYTHONWARNINGS", "PROMPT_COMMAND", "npm_config_script_shell", "FOO"],
)  # fmt: skip
def test_other_leading_assignments_ask(var: str) -> None:
    assert floors(f"{var}=x npm test") == {"npm test": "ask"}
    assert floors(f"env {var}=x npm test")["npm test"] == "ask"
    assert floors(f"sudo {var}=x npm test")["npm test"] == "ask"


@pytest.mark.parametrize("command", ["PATH=/tmp", "FOO=1", "CI=1", "a[1]=x", "X=1 Y=2", "X+=1"])
def test_standalone_assignments_never_allowed(command: str) -> None:
    assert never_allowed(command)


def test_assignment_then_command() -> None:
    # A standalone PATH= changes what every later command is.
    assert never_allowed("PATH=/tmp; npm test")
    assert never_allowed("export PATH=/tmp; npm test")


# --------------------------------------------------------------------------------------------
# Redirections


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo > o", ["o"]),
        ("echo >> o", ["o"]),
        ("echo &> o", ["o"]),
        ("echo &>> o", ["o"]),
        ("echo >| o", ["o"]),
        ("echo 2> o", ["o"]),
        ("echo 2>> o", ["o"]),
        ("echo >& o", ["o"]),
        ("echo 1>&o", ["o"]),
        ("echo > 'a b'", ["a b"]),
        ("echo > ./sub/../o", ["o"]),
        ("echo > /proj/o", ["o"]),
        ("echo | tee o", ["o"]),
        ("echo | tee -a o p", ["o", "p"]),
        ("dd if=a of=o", ["o"]),
        ("echo 2>&1", []),
        ("echo >&2", []),
        ("echo 2>&-", []),
        ("echo >&-", []),
        ("echo < i", []),
        ("echo <&3", []),
        ("echo > /dev/null", []),
        ("echo 2>/dev/null", []),
        ("echo &>/dev/null", []),
        ("echo > /dev/stderr", []),
        ("echo > /dev/fd/2", []),
        ("echo | tee /dev/null", []),
        ("echo 'a > b'", []),
        ("(echo) > o", ["o"]),
        ("{ echo; } > o", ["o"]),
        ("for i in a; do echo; done > o", ["o"]),
        ("a && b > o", ["o"]),
        ("a | b > o", ["o"]),
    ],
)
def test_redirections_are_writes(command: str, expected: list[str]) -> None:
    assert writes(command) == expected


def test_read_write_redirect_is_never_allowed() -> None:
    assert never_allowed("echo <> o")  # tree-sitter cannot read `<>`: ask


def test_escaped_blank_words_are_not_lost() -> None:
    assert never_allowed("npm test \\  x")  # bash passes " " as an argument
    assert never_allowed("npm test \\ x")


def test_touching_pieces_are_one_word() -> None:
    # tree-sitter splits a quoted piece from a following backslash escape; bash does not.
    assert commands("'r'\\m -rf x") == ["rm -rf x"]
    assert commands('""\\r\\m x') == ["rm x"]
    assert commands("echo > 'a'\\b -n") == ["echo -n"]
    assert writes("echo > 'a'\\b -n") == ["ab"]


def test_writes_outside_root_are_external() -> None:
    assert "/etc/x" in writes("echo > /etc/x")
    assert external("echo > /etc/x") == ["/etc/x"]
    assert external("echo > ../x") == ["/x"]
    assert external("echo > ~/x") == ["/home/dev/x"]
    assert external("echo | tee /tmp/x") == ["/tmp/x", "/tmp/x"][:1]


def test_write_target_not_static_asks() -> None:
    for command in ("echo > $F", "echo > $(f)", "echo > ~user/x", "echo > {a,b}", "echo > *.txt",
                    "echo > src/?.py", "echo | tee [ab]"):  # fmt: skip
        ps = [p for p in parts(command) if p.permission == "write"]
        assert ps, command
        assert all(p.floor == "ask" for p in ps), command


# --------------------------------------------------------------------------------------------
# Directories


def test_cd_moves_later_redirects() -> None:
    assert writes("cd sub && echo > o") == ["sub/o"]
    assert writes("cd sub; echo > o") == ["o", "sub/o"]  # cd may fail
    assert writes("cd sub || echo > o") == ["o", "sub/o"]
    assert writes("cd a && cd b && echo > o") == ["a/b/o"]
    assert writes("cd /proj/sub && echo > o") == ["sub/o"]
    assert writes("pushd sub && echo > o") == ["sub/o"]
    assert writes("cd sub && { echo > o; }") == ["sub/o"]
    assert writes("if true; then cd sub; fi; echo > o") == ["o", "sub/o"]


def test_cd_does_not_leak_out_of_subshells_pipelines_background() -> None:
    assert writes("(cd sub); echo > o") == ["o"]
    assert writes("(cd sub && echo > p); echo > o") == ["o", "sub/p"]
    assert writes("cd sub | true; echo > o") == ["o"]
    assert writes("cd sub & echo > o") == ["o"]
    assert writes("echo $(cd sub); echo > o") == ["o"]
    assert writes("bash -c 'cd sub'; echo > o") == ["o"]


def test_cd_unknown_makes_paths_unknown() -> None:
    for command in ("cd $X; echo > o", "cd -; echo > o", "popd; echo > o",
                    "f() { cd sub; }; f; echo > o", "source x; echo > o",
                    "for d in a b; do cd $d; done; echo > o"):  # fmt: skip
        ws = [p for p in parts(command) if p.permission == "write"]
        assert ws, command
        assert all(p.floor == "ask" for p in ws), command
        assert never_allowed(command)


def test_cd_is_not_a_bash_part() -> None:
    assert commands("cd sub && ls") == ["ls"]
    assert not never_allowed("cd sub && ls")
    assert external("cd sub && ls") == []
    # A line that only changes directory runs nothing a bash rule decides (as in opencode):
    # one `directory` part, which the engine allows; never an allow by vacuous truth.
    assert analyse("cd sub && cd ../x", ROOT).parts == (
        Part("directory", f"{ROOT}/sub {ROOT}/x", "allow", "only changes directory"),
    )
    assert [p.permission for p in analyse("cd /tmp", ROOT).parts] == [
        "external_directory",
        "directory",
    ]
    for command in ("cd -", "cd $X", "# nothing"):
        assert never_allowed(command), command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("rm -rf /etc", ["/etc"]),
        ("cat ../../secret", ["/secret"]),
        ("cat ../proj2/x", ["/proj2/x"]),
        ("cat /proj/../etc/passwd", ["/etc/passwd"]),
        ("rm -rf ~", ["/home/dev"]),
        ("cat ~/.ssh/id_rsa", ["/home/dev/.ssh/id_rsa"]),
        ("cd /tmp && rm x", ["/tmp", "/tmp/x"]),
        ("cd /tmp", ["/tmp"]),
        ("cd", ["/home/dev"]),
        ("cd ..", ["/"]),
        ("cp a /etc/b", ["/etc/b"]),
        ("mv /etc/a b", ["/etc/a"]),
        ("chmod 777 /etc/x", ["/etc/x"]),
        ("find /etc -name x", ["/etc"]),
        ("touch -- /x", ["/x"]),
        ("sudo rm /etc/x", ["/etc/x"]),
        ("rm x", []),
        ("rm *.o", []),
        ("rm -rf ./build sub/x", []),
        ("rm -rf .*/x", [".*/x"]),
        ("rm -rf */../../x", ["/x"]),
        ("cat /proj/x", []),
        ("chmod 777 x", []),
    ],
)
def test_external_directory(command: str, expected: list[str]) -> None:
    assert external(command) == expected


def test_path_not_static_is_ask() -> None:
    ps = [p for p in parts("rm -rf $DIR") if p.permission == "external_directory"]
    assert [(p.subject, p.floor) for p in ps] == [("$DIR", "ask")]
    assert never_allowed('cd "$X"')
    assert never_allowed("cat ~other/x")


# --------------------------------------------------------------------------------------------
# Characters and bad input


@pytest.mark.parametrize(
    "command",
    [
        "\uff4epm test",
        "npm\u200b test",
        "npm test \u202ex",
        "npm test '\u2067x\u2069'",
        "npm test \ufeff",
        "npm test \u00ad",
        "npm test\r",
        "npm test \x1b[2J",
        "npm test \x7f",
        "npm test\x0b",
        "npm test # \u202e",
        "échoer x",
        "npm test '\u2028'",
    ],
)
def test_odd_characters_ask(command: str) -> None:
    assert never_allowed(command)


def test_non_ascii_in_arguments_is_fine() -> None:
    assert not never_allowed("echo héllo wörld")


@pytest.mark.parametrize(
    "command",
    ["a\x00b", b"npm \xff", b"\xc0\xaf", b"\xed\xa0\x80", "x\udc80", b"ok\x00"],
)
def test_bad_input(command: str | bytes) -> None:
    with pytest.raises(BadInput):
        check_input(command)
    if isinstance(command, str):
        with pytest.raises(BadInput):
            analyse(command, ROOT)


def test_valid_bytes_are_decoded() -> None:
    assert check_input("é".encode()) == "é"


@pytest.mark.parametrize(
    "command", ["", " ", "\n", "\t\n ", "# hi", "#!/bin/bash\n# x", ";", ":", "true"][:7]
)
def test_nothing_to_run_is_never_allowed(command: str) -> None:
    assert parts(command)
    assert never_allowed(command)


@pytest.mark.parametrize(
    "command",
    ["echo (", "echo $(", "if true; then", "echo 'x", 'echo "x', "case x in", "a &&", "(a",
     "a )", "{ a", "echo `x", "$(( 1 +", "f() {", "a | | b", "cat <<EOF\nx"],
)  # fmt: skip
def test_parse_errors_ask(command: str) -> None:
    assert never_allowed(command)


def test_parse_error_keeps_the_parts_it_can_read() -> None:
    assert "rm -rf x" in commands("rm -rf x; (")


# --------------------------------------------------------------------------------------------
# Size and depth


@pytest.mark.parametrize(
    "command",
    [
        "echo " + "$(" * 5000 + "rm x" + ")" * 5000,
        "(" * 10000 + "rm x" + ")" * 10000,
        "{ " * 5000 + "rm x; " + "} " * 5000,
        "if true; then " * 3000 + "rm x; " + "fi; " * 3000,
        "while true; do " * 3000 + "rm x; " + "done; " * 3000,
        "echo " + "`" * 3000,
        "echo " + '"$(' * 3000 + "x" + ')"' * 3000,
        "bash -c " + "'bash -c \"" * 1 + "x\"'",
        "eval " * 5000 + "x",
        "sudo " * 5000 + "x",
        " && ".join(["npm test"] * 3000) + " && rm x",
        " | ".join(["cat"] * 5000),
        "echo " + "a " * 500_000,
        "rm x;" * 200_000,
        "f() { " * 3000 + "x; " + "}; " * 3000,
        "echo $((" + "(" * 5000 + "1" + ")" * 5000 + "))",
        "x=" + "$(" * 3000 + ")" * 3000,
    ],
)
def test_huge_or_deep_input_asks_quickly(command: str) -> None:
    start = time.perf_counter()
    ps = analyse(command, ROOT, HOME).parts
    assert time.perf_counter() - start < 1.0
    assert any(p.floor != "allow" for p in ps) or all(p.subject != "rm x" for p in ps)
    assert len(ps) <= 600


def test_long_and_chain_still_finds_the_rm() -> None:
    assert "rm x" in commands(" && ".join(["npm test"] * 300) + " && rm x")


# --------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_analysed_or_rejected(text: str) -> None:
    try:
        ps = analyse(text, ROOT, HOME).parts
    except BadInput:
        assert "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        return
    assert ps
    assert all(p.permission in ("bash", "write", "external_directory") for p in ps)


def _bash() -> str | None:
    return shutil.which("bash")


_QUOTED = st.one_of(
    st.text(alphabet="abrmnp-x/.", min_size=1, max_size=4),
    st.text(alphabet="abrm -x", max_size=4).map(lambda s: f"'{s}'"),
    st.text(alphabet="abrm -x'", max_size=4).map(lambda s: f'"{s}"'),
    st.sampled_from(["\\r", "\\m", "$'\\x72'", "$'\\155'", "$'\\t'", "''", '""', "\\ ", "\\'"]),
)


@pytest.mark.skipif(_bash() is None, reason="needs bash as the oracle")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_QUOTED, min_size=1, max_size=3).map("".join), min_size=1, max_size=3))
def test_quote_removal_agrees_with_bash(words: list[str]) -> None:
    line = "printf '%s\\0' " + " ".join(words)
    out = subprocess.run(
        [str(_bash()), "--norc", "--noprofile", "-c", line],
        capture_output=True,
        check=True,
        timeout=10,
    ).stdout
    argv = out.decode("utf-8", "surrogateescape").split("\0")[:-1]
    ps = [p for p in parts(line) if p.permission == "bash"]
    expected = " ".join(["printf", "%s\\0", *argv])
    # Either the same words as bash, or gatekeeper knows it is unsure (never allowed).
    assert ps[0].subject == expected or never_allowed(line), (ps, argv)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="\\x0123456789abcfuUnte'\"?", max_size=12))
def test_ansi_c_decoding_agrees_with_bash(body: str) -> None:
    bash = _bash()
    if bash is None or "'" in body.replace("\\'", ""):
        return
    decoded = decode_ansi_c(body)
    if decoded is None:
        return
    res = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", f"printf '%s' $'{body}'"],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if res.returncode != 0:
        return
    if decoded.isascii() and "\x00" not in decoded:
        # (bytes >= 0x80 become non-ASCII characters: such a word is never trusted anyway)
        assert res.stdout == decoded.encode()


# --------------------------------------------------------------------------------------------
# Second review


@pytest.mark.parametrize(
    "command",
    [
        "echo ${x:-`rm -rf x`}",
        "echo ${x#$(rm -rf x)}",
        "echo ${x%`rm -rf x`}",
        "echo ${x/a/`rm -rf x`}",
        "echo ${x?`rm -rf x`}",
        "echo ${x^`rm -rf x`}",
        "echo ${x,,[$(rm -rf x)]}",
        'echo "${x#`rm -rf x`}"',
        "echo \"${x:-'$(rm -rf x)'}\"",  # inside double quotes, ' is not a quote in ${…}
        "echo \"${x:-'`rm -rf x`'}\"",
        "[[ x == ${y#`rm -rf x`} ]]",
        "cat <<EOF\n${x#$(rm -rf x)}\nEOF",
    ],
)
def test_substitutions_hidden_in_parameter_operands_run(command: str) -> None:
    # tree-sitter leaves these operands as one opaque word; bash expands them.
    assert "rm -rf x" in commands(command), parts(command)
    assert never_allowed(command)


@pytest.mark.parametrize(
    "command",
    [
        "echo ${x@P}",  # prompt expansion runs $(…) in the value
        "echo ${!x}",  # the value names a variable: a[$(cmd)] runs cmd
        "echo $((x + 1))",  # arithmetic evaluates a variable's value: a[$(cmd)] runs cmd
        "echo $(( $(cat f) ))",
        "echo $[x]",
        "echo ${a[i]} ",
        "echo ${a[$i]}",
        "echo ${s:x}",
        "[[ $x -eq 1 ]] && echo",
        "[[ -v $x ]] && echo",
        "for ((i=0; i<n; i++)); do echo; done",
        "for ((i=0; i<3; i++)); do read i; done",
        "for ((PATH=0; ; )); do npm test; done",
        "echo ${CDPATH:=/}; cd etc && echo x > passwd",
        "echo $((PATH=0)); npm test",
    ],
)
def test_values_evaluated_as_code_are_never_allowed(command: str) -> None:
    assert never_allowed(command), parts(command)


@pytest.mark.parametrize(
    "command",
    [
        "echo $((1 + 2)) $((-1)) $((1 << 2))",
        "echo ${a[0]} ${a[@]} ${!a[@]} ${!pre*} ${#a[@]} ${x:1:2} ${x: -1} ${x:-a}",
        "echo ${x@Q}",
        "[[ -v x ]] && echo",
        "[ $x -eq 1 ] && echo",
        "for ((i=0; i<3; i++)); do echo $i ${i}; done",
        "for ((;;)); do echo; done",
    ],
)
def test_literal_arithmetic_and_plain_expansions_stay_allowed(command: str) -> None:
    assert not never_allowed(command), parts(command)


@pytest.mark.parametrize(
    "command",
    [
        "if PATH=/tmp; then npm test; fi",
        "if true; then PATH=/tmp; fi; npm test",
        "while PATH=/tmp; do npm test; done",
        "until LD_PRELOAD=x; do npm test; done",
    ],
)
def test_assignments_in_conditions_and_bodies_ask(command: str) -> None:
    assert never_allowed(command), parts(command)


def test_function_definition_redirect_is_a_write() -> None:
    assert writes("f() { echo; } > /etc/x") == ["/etc/x"]
    # applied wherever the function is called: a relative target is not known
    assert writes("function f { echo; } 2>> ../log") == ["../log"]
    assert never_allowed("function f { echo; } 2>> ../log")


def test_function_bodies_run_where_they_are_called() -> None:
    # decided as if run in an unknown directory; a function that may move makes the rest unknown
    assert never_allowed("cd sub && f() { echo x > out.txt; } && cd .. && f")
    assert never_allowed("cd() { true; }; cd sub && echo x > out.txt")
    assert not never_allowed("f() { echo hi; }; f; echo x > out.txt")


@pytest.mark.parametrize("cp", [0x80000, 0xA0000, 0xE0001, 0xF0000, 0x10FFFF])
def test_code_points_that_crash_tree_sitter_are_not_parsed(cp: int) -> None:
    # tree-sitter-bash 0.25 reads out of bounds on `{` + such a code point (a segfault in
    # about half the runs); a decoded $'\U…' re-parsed by bash -c must not reach it either.
    for _ in range(30):
        assert never_allowed("a{" + chr(cp))
        assert never_allowed(f"bash -c $'a{{\\U{cp:08x}'")
    assert not never_allowed("git commit -m 'fix \U0001f389'")


def test_ansi_c_strings_end_at_nul_as_in_bash(tmp_path: Path) -> None:
    from gatekeeper.engine import decide_command
    from gatekeeper.policy import load_policy_file

    agent = tmp_path / "a.md"
    agent.write_text('---\npermission:\n  bash:\n    "*": ask\n    "rm *": deny\n---\n')
    policy = load_policy_file(agent)
    for command in ("$'rm\\c@xyz' -rf /", "$'rm\\0junk' -rf x", "$'rm\\x00' -rf x"):
        assert decide_command(policy, command, "/proj").decision == "deny", command


@pytest.mark.parametrize(
    "command",
    [
        "let 'x=a[$(rm -rf ~)]'",
        "let i++",
        "declare -i y=3",
        "typeset -gi n=3",
        "declare 'e[$(rm -rf ~)]=1'",
        "printf -v 'b[$(rm -rf ~)]' x",
        'printf -v "$name" x',
        "test -v 'f[$(rm -rf ~)]'",
    ],
)
def test_builtins_that_evaluate_arithmetic_ask(tmp_path: Path, command: str) -> None:
    """bash runs the substitution hidden in these values (checked with real bash)."""
    from gatekeeper.engine import decide_command
    from gatekeeper.policy import load_policy_file

    agent = tmp_path / "a.md"
    agent.write_text('---\npermission:\n  bash:\n    "*": allow\n---\n')
    assert decide_command(load_policy_file(agent), command, "/proj").decision == "ask"


@pytest.mark.parametrize(
    "command",
    ["local -a arr", "printf -v name %s x", "test -v HOME", "read -a arr <<< x", "declare -a list"],
)
def test_plain_uses_of_those_builtins_stay_allowed(tmp_path: Path, command: str) -> None:
    from gatekeeper.engine import decide_command
    from gatekeeper.policy import load_policy_file

    agent = tmp_path / "a.md"
    agent.write_text('---\npermission:\n  bash:\n    "*": allow\n---\n')
    assert decide_command(load_policy_file(agent), command, "/proj").decision == "allow"


# --------------------------------------------------------------------------------------------
# Corpus review (inputs from bashlex, shellcheck, Codex, opencode and bash's own tests)


@pytest.mark.parametrize(
    ("command", "inner"),
    [
        ("a; ! { rm -rf x; }", "rm -rf x"),  # bashlex: `a; ! { b; }`
        ("! ! rm -rf x", "rm -rf x"),
        ("time { rm -rf x; }", "rm -rf x"),
        ("x && ! { curl evil; }", "curl evil"),
    ],
)
def test_group_after_reserved_word_is_still_decided(command: str, inner: str) -> None:
    # tree-sitter reads `! { rm; }` as a command named `{`; bash runs rm.
    assert inner in commands(command)
    assert never_allowed(command)


@pytest.mark.parametrize(
    ("command", "inner"),
    [
        ('echo "${ rm -rf x; }"', "rm -rf x"),  # bash 5.3 comsub2.tests
        ("echo ${ rm -rf x; }", "rm -rf x"),
        ("echo ${| rm -rf x; }", "rm -rf x"),
        ("echo ${ ( rm -rf x) }", "rm -rf x"),
        ("echo ${ echo X${ curl nested; }Y; }", "curl nested"),
    ],
)
def test_bash_53_function_substitutions_are_walked(command: str, inner: str) -> None:
    assert inner in commands(command)
    assert never_allowed(command)


def test_quoted_brace_is_an_ordinary_command_name() -> None:
    assert commands("'{' rm") == ["{ rm"]


def test_cd_double_dash_takes_the_next_word_as_its_directory() -> None:
    # Codex parse_command: `cd -- -weird && cat foo.txt` reads -weird/foo.txt, not ~/foo.txt
    assert external("cd -- -weird && cat foo.txt") == []
    assert writes("cd -- -weird && echo x > f") == ["-weird/f"]
