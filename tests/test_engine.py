"""Decisions end to end: agent file + command line → allow / ask / deny (architecture.md §2-3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.engine import (
    combine,
    decide_command,
    decide_part,
    decide_path,
    env_parts,
    path_outside_rule,
)
from gatekeeper.errors import BadInput
from gatekeeper.policy import Policy, load_policy_file, parse_policy
from gatekeeper.shell import Analysis, Part

ROOT = "/proj"
HOME = "/home/dev"
BACKEND = Path(__file__).resolve().parent.parent / "policies" / "backend-engineer.md"

RULES = """---
permission:
  bash:
    "*": ask
    "npm*": allow
    "git status*": allow
    "echo*": allow
    "cat*": allow
    "true": allow
    "ls *": allow
    "rm *": deny
    "git push*": deny
  edit:
    "*": ask
    "build/*": allow
    "sub/*": allow
  external_directory:
    "*": ask
    "/srv/shared*": allow
---
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(RULES, "rules.md")


@pytest.fixture(scope="module")
def backend() -> Policy:
    return load_policy_file(BACKEND)


def decide(policy: Policy, command: str | bytes, cwd: str = ROOT) -> str:
    return decide_command(policy, command, cwd, HOME).decision


# --------------------------------------------------------------------------------------------
# The acceptance criteria of the issue, exactly.


def test_acceptance_npm_test_then_rm_asks_with_rm_explained_by_star(backend: Policy) -> None:
    d = decide_command(backend, "npm test && rm -rf build", ROOT, HOME)
    assert d.decision == "ask"
    rm = [p for p in d.parts if p.subject == "rm -rf build"]
    assert len(rm) == 1
    assert rm[0].decision == "ask"
    assert rm[0].rule is not None
    assert rm[0].rule.pattern == "*"
    star_line = next(
        i
        for i, line in enumerate(BACKEND.read_text().splitlines(), 1)
        if line.strip() == '"*": "ask"'
    )
    assert rm[0].rule.source == f"backend-engineer.md:{star_line}"
    assert f"backend-engineer.md:{star_line}" in d.reason
    assert "rm -rf build" in d.reason
    npm = next(p for p in d.parts if p.subject == "npm test")
    assert npm.decision == "allow"
    assert npm.rule is not None
    assert npm.rule.pattern == "npm*"


def test_acceptance_npm_ci_and_test_allowed(backend: Policy) -> None:
    d = decide_command(backend, "npm ci && npm test", ROOT, HOME)
    assert d.decision == "allow"
    assert {p.subject for p in d.parts} == {"npm ci", "npm test"}


def test_acceptance_git_status_then_rm_home_asks(backend: Policy) -> None:
    d = decide_command(backend, "git status; rm -rf ~", ROOT, HOME)
    assert d.decision == "ask"
    subjects = {p.subject: p.decision for p in d.parts}
    assert subjects["git status"] == "allow"
    assert subjects["rm -rf ~"] == "ask"


HIDING_PLACES = [
    "{}",
    "echo $({})",
    "echo `{}`",
    "bash -c '{}'",
    "sh -c '{}'",
    "bash -lc '{}'",
    "zsh -c '{}'",
    "sudo {}",
    "sudo -u root {}",
    "echo x | xargs {}",
    "xargs -0 -n 1 {}",
    "find . -exec {} \\;",
    "find . -name y -execdir {} +",
    "find . -ok {} \\;",
    "({})",
    "{{ {}; }}",
    "echo a | {}",
    "echo a |& {}",
    "{} | cat",
    "for i in 1 2; do {}; done",
    "while true; do {}; done",
    "until false; do {}; done",
    "select i in a; do {}; done",
    "if true; then {}; fi",
    "if {}; then :; fi",
    "if false; then :; elif true; then {}; else :; fi",
    "if false; then :; else {}; fi",
    "case a in a) {};; esac",
    "case $({}) in a) :;; esac",
    "f() {{ {}; }}",
    "function f {{ {}; }}",
    "true; {}",
    "true && {}",
    "false || {}",
    "true & {}",
    "{} &",
    "true\n{}",
    "eval '{}'",
    "eval {}",
    "env {}",
    "env -i CI=1 {}",
    "nice -n 5 {}",
    "nohup {}",
    "timeout 5 {}",
    "timeout -s KILL 5 {}",
    "time {}",
    "command {}",
    "exec {}",
    "builtin eval '{}'",
    "trap '{}' EXIT",
    "cat <({})",
    "tee >({})",
    "npm test > >({})",
    "echo $(echo $({}))",
    "echo `echo \\`{}\\``",
    'echo "$({})"',
    'echo "`{}`"',
    "X=$({}) npm test",
    "export X=$({})",
    "echo ${{X:-$({})}}",
    "echo $(( $({}) ))",
    "[[ $({}) ]]",
    "bash <<EOF\n{}\nEOF",
    "bash <<'EOF'\n{}\nEOF",
    "bash <<< '{}'",
    "sh -s <<< '{}'",
    "cat <<EOF\n$({})\nEOF",
    "cat <<EOF\n`{}`\nEOF",
    "cat <<-EOF\n\t$({})\n\tEOF",
    "bash -c 'bash -c \"{}\"'",
    "sudo bash -c '{}'",
    "nohup sh -c '{}' &",
    "find . -exec sh -c '{}' \\;",
]


@pytest.mark.parametrize("where", HIDING_PLACES)
def test_acceptance_rm_denied_wherever_it_hides(tmp_path: Path, where: str) -> None:
    text = BACKEND.read_text().replace('    "*": "ask"\n', '    "*": "ask"\n    "rm *": deny\n', 1)
    assert '"rm *": deny' in text
    f = tmp_path / "backend-engineer.md"
    f.write_text(text)
    pol = load_policy_file(f)
    assert decide(pol, "rm -rf x") == "deny"
    assert decide(pol, where.format("rm -rf x")) == "deny", where


# --------------------------------------------------------------------------------------------
# §2 pattern meaning as the engine applies it


def test_last_matching_rule_wins() -> None:
    pol = parse_policy(
        '---\npermission:\n  bash:\n    "git *": deny\n    "git status*": allow\n---\n', "p.md"
    )
    assert decide(pol, "git status") == "allow"
    assert decide(pol, "git push") == "deny"
    pol2 = parse_policy(
        '---\npermission:\n  bash:\n    "git status*": allow\n    "git *": deny\n---\n', "p.md"
    )
    assert decide(pol2, "git status") == "deny"


def test_no_rule_matches_is_ask() -> None:
    pol = parse_policy('---\npermission:\n  bash:\n    "npm*": allow\n---\n', "p.md")
    assert decide(pol, "make") == "ask"
    d = decide_command(pol, "make", ROOT)
    assert d.parts[0].rule is None


def test_trailing_space_star_matches_bare_command() -> None:
    pol = parse_policy('---\npermission:\n  bash:\n    "ls *": allow\n---\n', "p.md")
    assert decide(pol, "ls") == "allow"
    assert decide(pol, "ls -la") == "allow"
    assert decide(pol, "lsblk") == "ask"


def test_star_crosses_spaces_and_slashes(policy: Policy) -> None:
    assert decide(policy, "npm run build -- --out=dist/x") == "allow"
    assert decide(policy, "npmx") == "allow"  # "npm*" is a plain prefix: as opencode does it


def test_question_mark_is_one_character() -> None:
    pol = parse_policy('---\npermission:\n  bash:\n    "g? status": allow\n---\n', "p.md")
    assert decide(pol, "gg status") == "allow"
    assert decide(pol, "g status") == "ask"


def test_case_sensitive(policy: Policy) -> None:
    assert decide(policy, "NPM test") == "ask"


def test_permission_shorthand_and_tools_false() -> None:
    pol = parse_policy("---\ntools:\n  bash: false\npermission: allow\n---\n", "p.md")
    d = decide_command(pol, "npm test", ROOT)
    assert d.decision == "deny"
    assert d.parts[0].rule is not None
    assert d.parts[0].rule.origin == "tools.bash"


# --------------------------------------------------------------------------------------------
# §3 decisions


def test_strictest_part_wins(policy: Policy) -> None:
    assert decide(policy, "npm test; git status") == "allow"
    assert decide(policy, "npm test; make") == "ask"
    assert decide(policy, "npm test; make; rm x") == "deny"


def test_decision_carries_reasons(policy: Policy) -> None:
    d = decide_command(policy, "npm test; rm -rf x", ROOT)
    assert d.decision == "deny"
    rm = next(p for p in d.parts if p.subject == "rm -rf x")
    line = RULES.splitlines().index('    "rm *": deny') + 1
    assert rm.rule is not None
    assert (rm.rule.pattern, rm.rule.action, rm.rule.source) == ("rm *", "deny", f"rules.md:{line}")
    assert f'rule "rm *" → deny (rules.md:{line})' in d.reason
    js = d.to_json()
    assert js["decision"] == "deny"
    assert any(p["rule"] and p["rule"]["source"] == f"rules.md:{line}" for p in js["parts"])


@pytest.mark.parametrize(
    "command",
    ["npm test", "npm ci && npm test", "git status", "git status --short", "echo hi | cat",
     "CI=1 npm test", "NODE_ENV=test npm test", "npm test $X", 'npm test "$X"', "npm test ${X}",
     "npm test 2>&1", "npm test >/dev/null 2>&1", "npm test >&2", "npm test >&-", "npm test < in",
     "npm test # a comment", "npm  test", "'n'pm test", "npm test\n", "npm test; npm run lint",
     "echo $(npm --version)", "cat README.md | npm test", "(npm test)", "{ npm test; }",
     "if npm test; then echo ok; fi", "for f in a b; do npm test $f; done",
     "npm test &>/dev/null", "npm test 2>/dev/null", "cat <<'EOF'\n$(rm -rf x)\nEOF",
     "cat <<EOF\nplain text\nEOF", "echo 'rm -rf x'", "echo \"rm -rf x\"", "cat ./sub/file",
     "npm test \\\n  --watch=false"],
)  # fmt: skip
def test_allowed(policy: Policy, command: str) -> None:
    assert decide(policy, command) == "allow", command


@pytest.mark.parametrize(
    "command",
    [
        "make",
        "$CMD",
        "$CMD status",
        "${CMD} test",
        '"$CMD" test',
        "$(echo npm) test",
        "`echo npm` test",
        "np$X test",
        "/bin/r? -rf x",
        "{npm,rm} test",
        "npm test > out.txt",
        "npm test | tee log",
        "cd sub; make",
        "PATH=/tmp npm test",
        "LD_PRELOAD=/x.so npm test",
        "NODE_OPTIONS=--require=/x.js npm test",
        "GIT_DIR=/x git status",
        "GIT_SSH_COMMAND=x git status",
        "PATH=/tmp",
        "FOO=1",
        "CI=1",
        "export PATH=/tmp",
        "",
        "   ",
        "\n\n",
        "# comment only",
        "   # comment\n# more",
        ";",
        "npm test; (",
        "npm test &&",
        "npm test )",
        "\uff4epm test",
        "npm\u200b test",
        "npm test \u202ex",
        "npm test \u2066x\u2069",
        "echo hi\r",
        "npm test \x1b[2J",
        "cat ../../secret",
        "cat /etc/passwd",
        "cat ~/.ssh/id_rsa",
        "echo x > /etc/x",
        "cd /tmp && npm test",
        "cd $X; npm test",
        "sudo npm test",
        "env PATH=/x npm test",
        'bash -c "$X"',
        "eval $X",
        "npm test | sh",
        "curl x | bash",
        "source ./x.sh",
        ". ./x.sh",
    ],
)
def test_never_allowed(policy: Policy, command: str) -> None:
    assert decide(policy, command) == "ask", repr(command)


@pytest.mark.parametrize(
    "command",
    [
        "'r'm -rf x",
        'r"m" -rf x',
        "r\\m -rf x",
        "\\rm -rf x",
        '"rm" -rf x',
        "r''m -rf x",
        "$'\\x72m' -rf x",
        "$'\\162m' -rf x",
        "$'\\u0072m' -rf x",
        "r\\\nm -rf x",
        "rm -rf x\\\n;",
        "/bin/rm -rf x",
        "/usr/bin/rm -rf x",
        "./rm x",
        "rm  -rf   x",
        "rm\t-rf x",
        "CI=1 rm -rf x",
        "PATH=/x rm -rf x",
        "rm",
        "rm x >/dev/null",
        ">/dev/null rm -rf x",
        "rm >/dev/null -rf x",
        "2>&1 rm x",
        "true &\\\n& rm x",
        "echo a # c \\\nrm x",
        "npm test; rm -rf /",
        "rm -rf x &",
        "! rm x",
        "coproc rm x",
        "command -p rm x",
        "exec -a name rm x",
        "sudo -E -u root -- rm x",
        "sudo --user=root rm x",
        "env -u HOME -- rm x",
        "env -- rm x",
        "nice rm x",
        "nice -10 rm x",
        "timeout --signal=KILL 5s rm x",
        "time -p rm x",
        "xargs -I{} rm {}",
        "xargs --max-args=1 rm",
        "xargs -0r rm",
        "xargs -n 1 -P 4 rm",
        "stdbuf -o0 rm x",
        "setsid rm x",
        "eval eval rm x",
        "eval 'rm -rf' x",
        "watch rm x",
        "git status; rm x",
        "/usr/bin/git push",
        "git  push",
        "git push --force",
    ],
)
def test_denied(policy: Policy, command: str) -> None:
    assert decide(policy, command) == "deny", repr(command)


def test_variants_only_make_things_stricter(policy: Policy) -> None:
    # /usr/bin/git is tried as git: a deny for "git push*" catches it...
    assert decide(policy, "/usr/bin/git push") == "deny"
    # ... but /usr/bin/npm is not npm: the allow rule does not reach it.
    assert decide(policy, "/usr/bin/npm test") == "ask"
    assert decide(policy, "./npm test") == "ask"
    assert decide(policy, "/usr/bin/git status") == "ask"


def test_decide_part_floor_and_variants(policy: Policy) -> None:
    assert decide_part(policy, Part("bash", "npm test")).decision == "allow"
    assert decide_part(policy, Part("bash", "npm test", floor="ask")).decision == "ask"
    assert decide_part(policy, Part("bash", "npm test", floor="deny")).decision == "deny"
    assert decide_part(policy, Part("bash", "rm x", floor="ask")).decision == "deny"
    p = decide_part(policy, Part("bash", "/x/npm test", variants=("npm test",)))
    assert p.decision == "ask"  # the variant's allow never loosens
    p = decide_part(policy, Part("bash", "npm test", variants=("rm x",)))
    assert p.decision == "deny"
    assert p.rule is not None
    assert p.rule.pattern == "rm *"


def test_combine_empty_is_ask() -> None:
    assert combine(()).decision == "ask"


# --------------------------------------------------------------------------------------------
# Writes and directories


WRITES = """---
permission:
  bash: allow
  edit:
    "*": allow
    "o": deny
    "/proj/secret/*": deny
---
"""


def test_redirect_is_a_write_decided_by_edit_rules() -> None:
    pol = parse_policy(WRITES, "w.md")
    assert decide(pol, "echo hi > x") == "allow"
    for command in ("echo hi > o", "echo hi >> o", "echo hi &> o", "echo hi >| o",
                    "echo hi 2> o", "echo hi >& o", "echo hi 1>&o", "echo | tee o",
                    "echo | tee -a x o", "dd if=x of=o", "echo hi > ./o", "echo hi > sub/../o",
                    "echo hi > /proj/o", "(echo hi) > o", "{ echo; } > o", "echo > secret/k",
                    "cd secret && echo > k", "echo hi > $(echo o)"):  # fmt: skip
        assert decide(pol, command) != "allow", command
    d = decide_command(pol, "echo hi > o", ROOT)
    w = next(p for p in d.parts if p.permission == "write")
    assert (w.subject, w.decision) == ("o", "deny")
    assert decide(pol, "echo > secret/k") == "deny"  # an absolute rule catches a relative path


def test_write_rules_preferred_over_edit_rules() -> None:
    pol = parse_policy(
        '---\npermission:\n  bash: allow\n  edit: allow\n  write:\n    "*": deny\n---\n', "p.md"
    )
    assert decide(pol, "echo hi > x") == "deny"
    assert decide(pol, "echo hi") == "allow"


def test_cd_changes_where_redirects_land() -> None:
    pol = parse_policy(WRITES, "w.md")
    d = decide_command(pol, "cd sub && echo hi > o", ROOT)
    assert [p.subject for p in d.parts if p.permission == "write"] == ["sub/o"]
    assert d.decision == "allow"
    # cd may fail after ';': the write may land in either place.
    d = decide_command(pol, "cd sub; echo hi > o", ROOT)
    assert sorted(p.subject for p in d.parts if p.permission == "write") == ["o", "sub/o"]
    assert d.decision == "deny"
    assert decide(pol, "(cd sub; echo > o)") == "deny"
    assert decide(pol, "(cd sub && echo > o)") == "allow"
    assert decide(pol, "(cd sub); echo > o") == "deny"  # the subshell's cd does not leak
    assert decide(pol, "cd sub | true; echo > o") == "deny"  # nor a pipeline's


def test_relative_allow_rule_for_writes_can_allow(policy: Policy) -> None:
    assert decide(policy, "npm run build > build/log.txt") == "allow"
    assert decide_path(policy, "edit", "build/x", ROOT).decision == "allow"


def test_decide_path(policy: Policy) -> None:
    pol = parse_policy(WRITES, "w.md")
    assert decide_path(pol, "edit", "x", ROOT).decision == "allow"
    assert decide_path(pol, "edit", "o", ROOT).decision == "deny"
    assert decide_path(pol, "edit", "secret/x", ROOT).decision == "deny"
    assert decide_path(policy, "edit", "/srv/shared/x", ROOT).decision == "ask"
    with pytest.raises(BadInput):
        decide_path(policy, "bash", "x", ROOT)


def test_external_directory(policy: Policy) -> None:
    assert decide(policy, "cat /srv/shared/x") == "allow"
    assert decide(policy, "cat /srv/other/x") == "ask"
    assert decide(policy, "cd /tmp && rm x") == "deny"
    d = decide_command(policy, "cd /tmp && ls", ROOT)
    assert d.decision == "ask"
    assert any(p.permission == "external_directory" and p.subject == "/tmp" for p in d.parts)
    pol = parse_policy(
        '---\npermission:\n  bash: allow\n  external_directory:\n    "/etc*": deny\n---\n', "p.md"
    )
    assert decide(pol, "rm -rf /etc") == "deny"
    assert decide(pol, "cat ../../etc/passwd") == "deny"
    assert decide(pol, "cd /etc; ls") == "deny"
    assert decide(pol, "ls") == "allow"


# --------------------------------------------------------------------------------------------
# Bad input, robustness


def test_bad_input_rejected(policy: Policy) -> None:
    with pytest.raises(BadInput):
        decide_command(policy, "npm test\x00; rm x", ROOT)
    with pytest.raises(BadInput):
        decide_command(policy, b"npm test \xff", ROOT)
    with pytest.raises(BadInput):
        decide_command(policy, "npm test \udcff", ROOT)
    assert decide(policy, b"npm test") == "allow"


def test_parse_error_still_denies_a_deny_part(policy: Policy) -> None:
    assert decide(policy, "rm -rf x; (") == "deny"
    assert decide(policy, "npm test; (") == "ask"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("npm test;&|()$`'\"\\{}<>\n #=*?~x")), max_size=40))
def test_random_shell_text_never_crashes_and_keeps_deny(text: str) -> None:
    pol = parse_policy(RULES, "rules.md")
    d = decide_command(pol, text, ROOT, HOME)
    assert d.decision in ("allow", "ask", "deny")
    if d.decision == "allow":
        assert d.parts
        assert all(p.decision == "allow" for p in d.parts)
    # Adding a separate rm command can never make it looser than deny.
    assert decide_command(pol, text + "\nrm x", ROOT, HOME).decision in ("deny", "ask")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(HIDING_PLACES), st.sampled_from(HIDING_PLACES))
def test_nested_hiding_places_still_deny(policy: Policy, outer: str, inner: str) -> None:
    # Two hiding places, one inside the other; quoting may break: at least never allow.
    command = outer.format(inner.format("rm -rf x"))
    assert decide(policy, command) != "allow"


# --------------------------------------------------------------------------------------------
# Confirmation, paths as command words, the run's locale


def test_a_would_be_allow_is_confirmed_and_an_ask_is_not(policy: Policy) -> None:
    asked: list[str] = []

    def confirm(analysis: Analysis) -> tuple[Part, ...]:
        asked.append(analysis.command)
        return (Part("bash", analysis.command, "ask", "the readers disagree"),)

    assert decide_command(policy, "npm test", ROOT, confirm=confirm).decision == "ask"
    assert decide_command(policy, "rm -rf x", ROOT, confirm=confirm).decision == "deny"
    assert decide_command(policy, "make", ROOT, confirm=confirm).decision == "ask"
    assert asked == ["npm test"]  # only the would-be allow paid for a confirmation


def test_a_confirmed_allow_stays_allowed(policy: Policy) -> None:
    d = decide_command(policy, "npm test", ROOT, confirm=lambda _a: ())
    assert d.decision == "allow"


@pytest.mark.parametrize(
    ("subject", "pattern", "covered"),
    [
        ("npm test", "npm*", True),
        ("npm/../../bin/rm -rf /", "npm*", False),
        ("./gradlew build", "./gradlew *", True),
        ("./gradlew build", "./grad*", True),  # a path the author wrote: the word stays in it
        ("./grad/../../bin/rm", "./grad*", False),
        ("./scripts/build.sh", "./scripts/*", True),
        ("./scripts/../../bin/rm", "./scripts/*", False),
        ("/usr/bin/git status", "/usr/bin/git *", True),
        ("/usr/bin/git status", "*", True),
        ("bin/tool", "?in/*", True),
    ],
)
def test_a_path_command_word_needs_a_rule_that_names_it(
    subject: str, pattern: str, covered: bool
) -> None:
    assert (path_outside_rule(subject, pattern) is None) == covered


@pytest.mark.parametrize(
    ("env", "command", "asks"),
    [
        ({"LANG": "zh_TW.BIG5"}, "echo 功能", True),
        ({"LC_ALL": "ja_JP.SJIS", "LANG": "C.UTF-8"}, "echo ソ", True),
        ({"LC_CTYPE": "zh_CN.GBK"}, "echo 中", True),
        ({"LANG": "zh_TW.BIG5"}, "echo ascii only", False),
        ({"LANG": "en_US.UTF-8"}, "echo 功能", False),
        ({"LC_ALL": "C"}, "echo é", False),
        ({"LANG": "C.utf8"}, "echo é", False),
    ],
)
def test_a_locale_that_reads_bytes_otherwise_asks(
    policy: Policy, env: dict[str, str], command: str, asks: bool
) -> None:
    parts = env_parts(env, command)
    assert any("locale" in (p.note or "") for p in parts) == asks


# --------------------------------------------------------------------------------------------
# The project root beside the directory a line starts in


ROOTED = parse_policy(
    "---\npermission:\n"
    '  bash:\n    "*": ask\n    "probe *": allow\n    "cd *": allow\n'
    '  write:\n    "*": allow\n    "sub/*.log": deny\n'
    '  edit:\n    "*": allow\n    "sub/*.log": deny\n'
    '  external_directory:\n    "*": ask\n    "/deny/*": deny\n'
    "---\n",
    "rooted.md",
)


@pytest.mark.parametrize(
    ("command", "cwd"),
    [
        ("probe > x.log", "/proj/sub"),  # started in sub
        ("cd sub && probe > x.log", "/proj"),  # went there
        ("probe > ../sub/x.log", "/proj/other"),
        ("probe > /proj/sub/x.log", "/elsewhere/a"),
    ],
)
def test_rules_stay_relative_to_the_root_wherever_the_line_starts(command: str, cwd: str) -> None:
    d = decide_command(ROOTED, command, cwd, root="/proj")
    assert d.decision == "deny", d
    write = next(p for p in d.parts if p.permission == "write")
    assert write.subject == "sub/x.log"


def test_a_line_starting_outside_the_root_is_external() -> None:
    d = decide_command(ROOTED, "probe x", "/tmp/w", root="/proj")
    assert d.decision == "ask"
    assert [(p.permission, p.subject) for p in d.parts if p.decision != "allow"] == [
        ("external_directory", "/tmp/w")
    ]
    assert decide_command(ROOTED, "probe x", "/deny/w", root="/proj").decision == "deny"
    # Inside the root, or with no root given (old clients: the cwd is the root), it is not.
    assert decide_command(ROOTED, "probe x", "/proj/sub", root="/proj").decision == "allow"
    assert decide_command(ROOTED, "probe x", "/tmp/w").decision == "allow"


def test_paths_resolve_against_the_cwd_and_match_against_the_root() -> None:
    assert decide_path(ROOTED, "write", "x.log", "/proj/sub", root="/proj").decision == "deny"
    assert decide_path(ROOTED, "edit", "../sub/x.log", "/proj/a", root="/proj").decision == "deny"
    assert decide_path(ROOTED, "write", "x.log", "/proj", root="/proj").decision == "allow"
    outside = decide_path(ROOTED, "write", "x.log", "/tmp/w", root="/proj")
    assert outside.decision == "ask"
    assert ("external_directory", "/tmp/w/x.log") in [
        (p.permission, p.subject) for p in outside.parts
    ]


# --------------------------------------------------------------------------------------------
# Rules written against opencode's subject (the command as spelled, redirections included)

AS_OPENCODE = parse_policy(
    "---\npermission:\n  bash:\n"
    '    "*": ask\n    "echo *": allow\n    "echo * > out/*": deny\n'
    '    "FOO=1 npm *": deny\n    "npm *": allow\n    "ls *": allow\n'
    "---\n",
    "as-opencode.md",
)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo hi > out/x", "deny"),  # the rule names the redirection
        ("echo hi >out/x", "ask"),  # opencode's spelling differs too: only the write asks
        ("(echo a > out/b)", "deny"),
        ("echo a 2>&1 > out/x", "deny"),
        ("echo hi > other/x", "ask"),  # the write still asks (write rules: none)
        ("FOO=1 npm test", "deny"),  # the rule names the assignment
        ("npm test", "allow"),
        # A catch-all the plain subject matches as well is no reason to be stricter: the
        # harmless assignment is only spelling (opencode would ask; gatekeeper's reading is
        # the command that runs).
        ("LANGUAGE=en ls -la", "allow"),
    ],
)
def test_rules_naming_redirections_or_assignments_match_as_in_opencode(
    command: str, expected: str
) -> None:
    assert decide_command(AS_OPENCODE, command, ROOT).decision == expected


def test_external_directory_rules_written_as_opencode_forms_them() -> None:
    pol = parse_policy(
        "---\npermission:\n  bash: allow\n  edit: allow\n"
        '  external_directory:\n    "*": ask\n    "/some/dir/*": deny\n---\n',
        "ext.md",
    )
    for command in ("cd /some/dir", "cd /some/dir/ && ls", "ls /some/dir", "cat /some/dir/x"):
        assert decide_command(pol, command, ROOT).decision == "deny", command
    assert decide_path(pol, "edit", "/some/dir", ROOT).decision == "deny"
    assert decide_command(pol, "cd /some/other", ROOT).decision == "ask"


def test_a_leading_double_slash_is_the_root_directory() -> None:
    """Linux reads //etc as /etc (POSIX lets two leading slashes mean something else, so
    normpath keeps them): rules must see the same path."""
    pol = parse_policy(
        "---\npermission:\n  bash: allow\n"
        '  write:\n    "*": allow\n    "locked/*": deny\n'
        '  external_directory:\n    "*": allow\n    "/etc/*": deny\n---\n',
        "slashes.md",
    )
    assert decide_path(pol, "write", "//proj/locked/x", ROOT).decision == "deny"
    assert decide_path(pol, "write", "//etc/passwd", ROOT).decision == "deny"
    for command in ("echo x > //proj/locked/x", "cd //proj/locked && echo x > y", "cp a //etc/x"):
        assert decide_command(pol, command, ROOT).decision == "deny", command
    assert decide_command(pol, "echo x > y", "//proj/locked", root=ROOT).decision == "deny"
