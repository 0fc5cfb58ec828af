"""Agent files on disk → policies: meaning, line numbers, and errors that say what to fix."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from gatekeeper.engine import decide_other
from gatekeeper.errors import PolicyError
from gatekeeper.policy import (
    Policy,
    bundled_policy_dir,
    load_policy_dir,
    load_policy_file,
    parse_policy,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "policies" / "backend-engineer.md"


def agent(directory: Path, frontmatter: str, name: str = "agent", body: str = "# Prompt\n") -> Path:
    """Write an agent file (frontmatter given without the --- lines) and return its path."""
    path = directory / f"{name}.md"
    path.write_text(f"---\n{textwrap.dedent(frontmatter).strip(chr(10))}\n---\n\n{body}")
    return path


def load(directory: Path, frontmatter: str, name: str = "agent") -> Policy:
    return load_policy_file(agent(directory, frontmatter, name))


def load_error(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    return str(info.value)


def assert_names(message: str, path: Path, line: int | None, *fragments: str) -> None:
    """The message names the file, the line (when given) and every fragment (key, fix)."""
    assert str(path) in message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def line_of(path: Path, text: str, after: str | None = None) -> int:
    """1-based number of the first line equal (stripped) to ``text``, after ``after`` if given."""
    lines = path.read_text().split("\n")
    start = 0
    if after is not None:
        start = next(i for i, x in enumerate(lines) if x.strip() == after) + 1
    return next(i for i, x in enumerate(lines) if i >= start and x.strip() == text) + 1


# --------------------------------------------------------------------------------------------
# Meaning


def test_map_of_patterns_in_file_order(tmp_path: Path) -> None:
    pol = load(
        tmp_path,
        """
        description: test agent
        permission:
          bash:
            "*": ask
            "git *": allow
            "git push *": deny
            rm: deny
        """,
    )
    rs = pol.rulesets["bash"]
    assert [(r.pattern, r.action) for r in rs.rules] == [
        ("*", "ask"),
        ("git *", "allow"),
        ("git push *", "deny"),
        ("rm", "deny"),
    ]
    assert pol.lookup("bash", "git status") == ("allow", rs.rules[1])
    assert pol.lookup("bash", "git push origin") == ("deny", rs.rules[2])
    assert pol.lookup("bash", "git") == ("allow", rs.rules[1])
    assert pol.lookup("bash", "gitk") == ("ask", rs.rules[0])
    assert pol.lookup("bash", "rm") == ("deny", rs.rules[3])
    assert pol.lookup("bash", "rm -rf /") == ("ask", rs.rules[0])
    assert pol.name == "agent"
    assert pol.path == str(tmp_path / "agent.md")
    assert list(pol.permissions()) == ["bash"]


def test_no_matching_rule_is_ask_without_rule(tmp_path: Path) -> None:
    pol = load(tmp_path, 'permission:\n  bash:\n    "npm *": allow\n')
    assert pol.lookup("bash", "make") == ("ask", None)
    assert pol.lookup("edit", "src/x.py") == ("ask", None)


def test_single_action_means_star(tmp_path: Path) -> None:
    pol = load(tmp_path, "permission:\n  bash: deny\n  edit: allow\n")
    (rule,) = pol.rulesets["bash"].rules
    assert (rule.pattern, rule.action, rule.source) == ("*", "deny", "agent.md:3")
    assert pol.lookup("bash", "ls") == ("deny", rule)
    assert pol.lookup("bash", "") == ("deny", rule)
    assert pol.lookup("edit", "a/b.txt")[0] == "allow"


def test_whole_permission_shorthand_applies_to_every_key(tmp_path: Path) -> None:
    pol = load(tmp_path, "permission: allow\n")
    assert pol.rulesets == {}
    for permission in ("bash", "edit", "write", "webfetch", "external_directory", "anything"):
        action, rule = pol.lookup(permission, "whatever at all")
        assert action == "allow"
        assert rule is not None
        assert rule.origin == "permission"
        assert rule.source == "agent.md:2"
    assert load(tmp_path, "permission: deny\n", "d").lookup("bash", "ls")[0] == "deny"


def test_tools_false_denies_and_true_does_not(tmp_path: Path) -> None:
    pol = load(
        tmp_path,
        """
        tools:
          bash: false
          webfetch: false
          read: true
        permission:
          bash: allow
          webfetch: allow
          read: allow
        """,
    )
    action, rule = pol.lookup("bash", "ls")
    assert action == "deny"
    assert rule is not None
    assert (rule.origin, rule.source) == ("tools.bash", "agent.md:3")
    assert pol.lookup("webfetch", "https://example.com")[0] == "deny"
    assert pol.lookup("read", "x")[0] == "allow"
    assert pol.lookup("edit", "x") == ("ask", None)


@pytest.mark.parametrize("tool", ["edit", "patch", "multiedit"])
def test_edit_tools_false_also_deny_write(tmp_path: Path, tool: str) -> None:
    pol = load(
        tmp_path,
        f"""
        tools:
          {tool}: false
        permission:
          edit: allow
          write: allow
          bash: allow
        """,
    )
    assert pol.lookup("edit", "src/a.py")[0] == "deny"
    assert pol.lookup("write", "src/a.py")[0] == "deny"
    assert pol.lookup("bash", "ls")[0] == "allow"


def test_write_false_denies_only_write(tmp_path: Path) -> None:
    pol = load(tmp_path, "tools:\n  write: false\npermission:\n  edit: allow\n")
    assert pol.lookup("write", "a")[0] == "deny"
    assert pol.lookup("edit", "a")[0] == "allow"


def test_tools_all_true_changes_nothing(tmp_path: Path) -> None:
    pol = load(tmp_path, "tools:\n  bash: true\n  edit: true\npermission:\n  bash: ask\n")
    assert pol.disabled == {}
    assert pol.lookup("bash", "ls")[0] == "ask"


def test_other_permission_keys_are_answerable(tmp_path: Path) -> None:
    pol = load(
        tmp_path,
        """
        permission:
          webfetch:
            "*": ask
            "https://docs.python.org/*": allow
          read: deny
        """,
    )
    assert pol.lookup("webfetch", "https://docs.python.org/3/library/re.html")[0] == "allow"
    assert pol.lookup("webfetch", "https://evil.example/x")[0] == "ask"
    assert pol.lookup("read", "/etc/passwd")[0] == "deny"
    assert decide_other(pol, "webfetch", "https://docs.python.org/3/").decision == "allow"
    assert decide_other(pol, "read", "x").decision == "deny"
    assert pol.warnings == ()


def test_unknown_but_plausible_permission_is_loaded_with_a_warning(tmp_path: Path) -> None:
    pol = load(tmp_path, "permission:\n  my_custom_tool: deny\n")
    assert pol.lookup("my_custom_tool", "x")[0] == "deny"
    (warning,) = pol.warnings
    assert "agent.md:3" in warning
    assert "permission.my_custom_tool" in warning


def test_unknown_top_level_key_is_a_warning(tmp_path: Path) -> None:
    pol = load(tmp_path, "permision:\n  bash: allow\n")
    (warning,) = pol.warnings
    assert "permision" in warning
    assert "did you mean 'permission'" in warning
    assert pol.lookup("bash", "ls") == ("ask", None)


def test_write_falls_back_to_edit_rules(tmp_path: Path) -> None:
    pol = load(tmp_path, 'permission:\n  edit:\n    "*": ask\n    "src/*": allow\n')
    action, rule = pol.lookup("write", "src/main.py")
    assert action == "allow"
    assert rule is not None
    assert rule.origin == "permission.edit"
    assert pol.lookup("write", "README.md")[0] == "ask"


def test_write_rules_win_over_edit_rules_when_present(tmp_path: Path) -> None:
    pol = load(
        tmp_path,
        """
        permission:
          edit:
            "*": allow
          write:
            "*": deny
            "build/*": allow
        """,
    )
    assert pol.lookup("edit", "src/a.py")[0] == "allow"
    assert pol.lookup("write", "src/a.py")[0] == "deny"
    assert pol.lookup("write", "build/out")[0] == "allow"


def test_line_numbers_in_the_real_example_file() -> None:
    pol = load_policy_file(EXAMPLE)
    assert pol.name == "backend-engineer"
    bash = pol.rulesets["bash"].rules
    assert bash[0].pattern == "*"
    assert bash[0].action == "ask"
    star_ask = '"*": "ask"'
    assert bash[0].source == f"backend-engineer.md:{line_of(EXAMPLE, star_ask, 'bash:')}"
    force = bash[-1]
    assert force.pattern == "git push --force*"
    force_line = line_of(EXAMPLE, '"git push --force*": "ask"')
    assert force.source == f"backend-engineer.md:{force_line}"
    edit_line = line_of(EXAMPLE, star_ask, "edit:")
    write_line = line_of(EXAMPLE, star_ask, "write:")
    assert pol.rulesets["edit"].rules[0].source == f"backend-engineer.md:{edit_line}"
    assert pol.rulesets["write"].rules[0].source == f"backend-engineer.md:{write_line}"
    # Every rule's line really holds its pattern.
    lines = EXAMPLE.read_text().split("\n")
    for rule in bash:
        number = int(rule.source.rsplit(":", 1)[1])
        assert lines[number - 1].strip().startswith(f'"{rule.pattern}":')
    assert pol.lookup("bash", "npm test")[0] == "allow"
    assert pol.lookup("bash", "git push --force origin")[0] == "ask"
    assert pol.lookup("bash", "kubectl get pods")[0] == "ask"


def test_line_numbers_survive_bom_crlf_and_unicode_line_separators(tmp_path: Path) -> None:
    # YAML breaks lines at U+2028 (and U+0085, U+2029, lone CR); editors do not.
    path = tmp_path / "agent.md"
    path.write_bytes(
        '\ufeff---\r\ndescription: "one\u2028line"\r\npermission:\r\n  bash:\r\n'
        '    "ls *": allow\r\n---\r\n'.encode()
    )
    pol = load_policy_file(path)
    (rule,) = pol.rulesets["bash"].rules
    assert rule.source == "agent.md:5"
    assert pol.lookup("bash", "ls -l")[0] == "allow"


def test_name_key_overrides_file_name(tmp_path: Path) -> None:
    pol = load(tmp_path, "name: reviewer\npermission:\n  bash: ask\n", name="some-file")
    assert pol.name == "reviewer"
    assert load(tmp_path, "description: x\n", name="plain").name == "plain"


def test_empty_frontmatter_is_an_agent_with_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_text("---\n---\nbody\n")
    pol = load_policy_file(path)
    assert pol.name == "empty"
    assert pol.lookup("bash", "ls") == ("ask", None)


def test_body_is_ignored(tmp_path: Path) -> None:
    body = "---\npermission: deny\n---\n\n```yaml\npermission: allow\n```\n"
    pol = load(tmp_path, "permission:\n  bash: ask\n")
    path = agent(tmp_path, "permission:\n  bash: ask\n", name="b", body=body)
    assert load_policy_file(path).lookup("bash", "ls")[0] == pol.lookup("bash", "ls")[0] == "ask"


def test_gatekeeper_tests_section(tmp_path: Path) -> None:
    pol = load(
        tmp_path,
        """
        permission:
          bash:
            "npm *": allow
        gatekeeper:
          tests:
            - command: npm test
              expect: allow
            - path: src/a.py
              permission: write
              expect: ask
              cwd: /proj
            - path: b.txt
              expect: ask
              name: default is edit
        """,
    )
    t1, t2, t3 = pol.tests
    assert (t1.permission, t1.subject, t1.expect, t1.cwd) == ("bash", "npm test", "allow", None)
    assert t1.source == "agent.md:7"
    assert t2.source == "agent.md:9"
    assert (t2.permission, t2.subject, t2.expect, t2.cwd) == ("write", "src/a.py", "ask", "/proj")
    assert t3.permission == "edit"


# --------------------------------------------------------------------------------------------
# Errors: file, line, key, fix


def test_misspelt_action(tmp_path: Path) -> None:
    path = agent(tmp_path, 'permission:\n  bash:\n    "*": ask\n    "npm *": alow\n')
    assert_names(load_error(path), path, 5, "permission.bash", "'alow'", "did you mean 'allow'")


def test_capitalised_action(tmp_path: Path) -> None:
    path = agent(tmp_path, 'permission:\n  bash:\n    "npm *": Allow\n')
    assert_names(load_error(path), path, 4, "permission.bash", "'Allow'", "lower-case: 'allow'")


def test_capitalised_single_action(tmp_path: Path) -> None:
    path = agent(tmp_path, "permission:\n  edit: DENY\n")
    assert_names(load_error(path), path, 3, "permission.edit", "lower-case: 'deny'")


@pytest.mark.parametrize("value", ["true", "false", "yes", "1", "0.5", "null", '""'])
def test_non_action_values(tmp_path: Path, value: str) -> None:
    path = agent(tmp_path, f'permission:\n  bash:\n    "ls *": {value}\n')
    assert_names(load_error(path), path, 4, "permission.bash", "allow, ask", "deny")


def test_boolean_action_says_yaml_read_a_boolean(tmp_path: Path) -> None:
    path = agent(tmp_path, "permission:\n  bash: true\n")
    assert_names(load_error(path), path, 3, "permission.bash", "boolean", "write allow")


def test_mapping_where_an_action_belongs(tmp_path: Path) -> None:
    path = agent(tmp_path, 'permission:\n  bash:\n    "ls *":\n      x: allow\n')
    assert_names(load_error(path), path, 5, "permission.bash", "a mapping is not an action")


def test_permission_shorthand_must_be_an_action(tmp_path: Path) -> None:
    path = agent(tmp_path, "permission: alow\n")
    assert_names(load_error(path), path, 2, "permission", "did you mean 'allow'")
    path = agent(tmp_path, "permission:\n  - bash\n", name="b")
    assert_names(load_error(path), path, 3, "permission", "must be a mapping")


@pytest.mark.parametrize(("key", "shown"), [("1", "'1'"), ("true", "'true'"), ("3.5", "'3.5'")])
def test_non_string_pattern(tmp_path: Path, key: str, shown: str) -> None:
    path = agent(tmp_path, f'permission:\n  bash:\n    "*": ask\n    {key}: allow\n')
    assert_names(
        load_error(path), path, 5, "permission.bash", shown, "not a string", f'"{key}": ask'
    )


def test_quoted_number_pattern_is_fine(tmp_path: Path) -> None:
    pol = load(tmp_path, 'permission:\n  bash:\n    "1": allow\n')
    assert pol.lookup("bash", "1")[0] == "allow"


def test_duplicate_pattern_keys(tmp_path: Path) -> None:
    path = agent(
        tmp_path, 'permission:\n  bash:\n    "rm *": deny\n    "ls": allow\n    rm *: allow\n'
    )
    assert_names(
        load_error(path), path, 6, "permission.bash.rm *", "duplicate", "first at line 4", "remove"
    )


def test_duplicate_permission_and_top_level_keys(tmp_path: Path) -> None:
    path = agent(tmp_path, "permission:\n  bash: ask\n  bash: allow\n")
    assert_names(load_error(path), path, 4, "permission.bash", "duplicate", "first at line 3")
    path = agent(tmp_path, "permission: ask\ntools: {}\npermission: allow\n", name="b")
    assert_names(load_error(path), path, 4, "frontmatter.permission", "duplicate")


@pytest.mark.parametrize(
    ("typo", "meant"), [("bsah", "bash"), ("edti", "edit"), ("wirte", "write")]
)
def test_unknown_permission_that_looks_like_a_typo(tmp_path: Path, typo: str, meant: str) -> None:
    path = agent(tmp_path, f"permission:\n  bash: ask\n  {typo}: allow\n")
    assert_names(
        load_error(path), path, 4, f"permission.{typo}", "unknown permission", f"'{meant}'"
    )


def test_permission_name_that_is_not_a_name(tmp_path: Path) -> None:
    path = agent(tmp_path, 'permission:\n  "Bash Tool": allow\n')
    assert_names(load_error(path), path, 3, "permission.Bash Tool", "unknown permission")


@pytest.mark.parametrize(
    ("frontmatter", "line"),
    [
        ('permission:\n  bash:\n    "ls *": allow\n   bad: indent\n', 5),
        ("permission: [unclosed\n", 3),
        ('description: "unterminated\npermission: ask\n', 4),
        ("permission:\n\tbash: allow\n", 3),
    ],
)
def test_broken_yaml(tmp_path: Path, frontmatter: str, line: int) -> None:
    path = agent(tmp_path, frontmatter)
    message = load_error(path)
    assert "invalid YAML" in message
    match = re.match(rf"{re.escape(str(path))}:(\d+): ", message)
    assert match is not None, message
    # The line points into the frontmatter, within a line of where the parser gave up.
    assert abs(int(match.group(1)) - line) <= 1, message


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-30",  # a date YAML resolves but cannot build
        "!!binary not-base64",
        "!!python/name:os.system allow",
        "!custom allow",
    ],
)
def test_values_the_safe_loader_cannot_build_are_errors(tmp_path: Path, value: str) -> None:
    path = agent(tmp_path, f'permission:\n  bash:\n    "ls": {value}\n')
    assert_names(load_error(path), path, 4, "permission.bash", "cannot read", "quoted string")
    path = agent(
        tmp_path, f"permission:\n  bash:\n    {value.split(maxsplit=1)[0]}: allow\n", name="k"
    )
    assert_names(load_error(path), path, 4, "permission.bash", "cannot read")
    path = agent(tmp_path, f"tools:\n  bash: {value}\n", name="t")
    assert_names(load_error(path), path, 3, "tools.bash")


def test_yaml_merge_key_is_an_error(tmp_path: Path) -> None:
    path = agent(tmp_path, 'permission:\n  bash:\n    <<: {"ls": allow}\n')
    assert_names(load_error(path), path, 4, "permission.bash")


def test_missing_frontmatter(tmp_path: Path) -> None:
    path = tmp_path / "agent.md"
    path.write_text("# Just a prompt\n\npermission: allow\n")
    assert_names(load_error(path), path, 1, "no YAML frontmatter", "'---'")
    path.write_text("")
    assert_names(load_error(path), path, 1, "no YAML frontmatter")


def test_unclosed_frontmatter(tmp_path: Path) -> None:
    path = tmp_path / "agent.md"
    path.write_text("---\npermission: allow\n# prompt\n")
    assert_names(load_error(path), path, 1, "not closed", "add a line '---'")


def test_frontmatter_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = agent(tmp_path, "- just\n- a list\n")
    assert_names(load_error(path), path, 2, "frontmatter", "must be a mapping")


def test_nul_byte(tmp_path: Path) -> None:
    path = tmp_path / "agent.md"
    path.write_bytes(b"---\npermission:\n  bash: allow\x00\n---\n")
    assert_names(load_error(path), path, 3, "NUL byte", "UTF-8 text")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.md"
    path.write_bytes(b"---\ndescription: caf\xe9\npermission: ask\n---\n")
    assert_names(load_error(path), path, 2, "not valid UTF-8", "byte 20", "save the file as UTF-8")


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.md"
    assert_names(load_error(missing), missing, None, "cannot read")
    big = tmp_path / "big.md"
    big.write_text("---\n# " + "x" * (1 << 20) + "\n---\n")
    assert_names(load_error(big), big, None, "larger than 1 MiB")


@pytest.mark.parametrize(
    ("value", "line", "fragments"),
    [
        ("yes", 3, ("tools.bash",)),  # YAML reads yes as true: fine, no error expected below
        ("allow", 3, ("tools.bash", "true or false")),
        ("0", 3, ("tools.bash", "true or false")),
        ("", 3, ("tools.bash", "true or false")),
    ],
)
def test_tools_values_must_be_booleans(
    tmp_path: Path, value: str, line: int, fragments: tuple[str, ...]
) -> None:
    path = agent(tmp_path, f"tools:\n  bash: {value}\n")
    if value == "yes":
        assert load_policy_file(path).disabled == {}
        return
    assert_names(load_error(path), path, line, *fragments)


def test_tools_must_be_a_mapping(tmp_path: Path) -> None:
    path = agent(tmp_path, "tools: [bash]\n")
    assert_names(load_error(path), path, 2, "tools", "must be a mapping")


@pytest.mark.parametrize(
    ("tests_yaml", "line", "fragments"),
    [
        ("  test: []", 3, ("gatekeeper.test", "unknown key", "did you mean 'tests'")),
        ("  tests: npm test", 3, ("gatekeeper.tests", "must be a list")),
        ("  tests:\n    - npm test", 4, ("gatekeeper.tests[]", "must be a mapping")),
        (
            "  tests:\n    - command: ls\n      expected: allow",
            5,
            ("gatekeeper.tests[].expected", "unknown key", "did you mean 'expect'"),
        ),
        ("  tests:\n    - command: ls", 4, ("gatekeeper.tests[]", "missing 'expect")),
        (
            "  tests:\n    - command: ls\n      path: a\n      expect: ask",
            4,
            ("gatekeeper.tests[]", "exactly one of command or path"),
        ),
        ("  tests:\n    - expect: ask", 4, ("exactly one of command or path",)),
        (
            "  tests:\n    - command: ls\n      expect: alow",
            5,
            ("gatekeeper.tests[].expect", "did you mean 'allow'"),
        ),
        ("  tests:\n    - command: 1\n      expect: ask", 4, ("tests[].command", "string")),
        ("  tests:\n    - command: ls\n      expect: true", 5, ("tests[].expect", "string")),
        (
            "  tests:\n    - path: a\n      permission: bash\n      expect: ask",
            5,
            ("gatekeeper.tests[].permission", "must be edit or write"),
        ),
    ],
)
def test_malformed_tests_section(
    tmp_path: Path, tests_yaml: str, line: int, fragments: tuple[str, ...]
) -> None:
    path = agent(tmp_path, "gatekeeper:\n" + tests_yaml + "\n")
    assert_names(load_error(path), path, line, *fragments)


def test_bad_name_key(tmp_path: Path) -> None:
    path = agent(tmp_path, 'name: "my agent/x"\n')
    assert_names(load_error(path), path, 2, "name", "plain name")
    path = agent(tmp_path, "name: 12\n", name="b")
    assert_names(load_error(path), path, 2, "name")


def test_parse_policy_is_pure_and_takes_a_name(tmp_path: Path) -> None:
    text = "---\npermission:\n  bash: allow\n---\n"
    pol = parse_policy(text, "/nowhere/x.md", name="given")
    assert pol.name == "given"
    assert pol.rulesets["bash"].rules[0].source == "x.md:3"
    assert not (tmp_path / "x.md").exists()


# --------------------------------------------------------------------------------------------
# Directories


def test_load_policy_dir(tmp_path: Path) -> None:
    agent(tmp_path, "permission:\n  bash: allow\n", name="builder")
    agent(tmp_path, "name: reviewer\npermission:\n  bash: deny\n", name="review-agent")
    (tmp_path / "notes.txt").write_text("not an agent")
    policies = load_policy_dir(tmp_path)
    assert sorted(policies) == ["builder", "reviewer"]
    assert policies["builder"].lookup("bash", "ls")[0] == "allow"
    assert policies["reviewer"].lookup("bash", "ls")[0] == "deny"


def test_load_policy_dir_duplicate_names(tmp_path: Path) -> None:
    first = agent(tmp_path, "permission: ask\n", name="alpha")
    second = agent(tmp_path, "name: alpha\npermission: allow\n", name="beta")
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path)
    message = str(info.value)
    assert "'alpha'" in message
    assert str(first) in message
    assert str(second) in message


def test_load_policy_dir_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no agent files"):
        load_policy_dir(tmp_path)
    with pytest.raises(PolicyError, match="not a directory"):
        load_policy_dir(tmp_path / "nope")


def test_load_policy_dir_one_broken_file_fails_the_load(tmp_path: Path) -> None:
    agent(tmp_path, "permission: allow\n", name="good")
    bad = agent(tmp_path, "permission: alow\n", name="bad")
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path)
    assert f"{bad}:2:" in str(info.value)


def test_bundled_policies_load() -> None:
    policies = load_policy_dir(bundled_policy_dir())
    assert "backend-engineer" in policies
    pol = policies["backend-engineer"]
    assert pol.lookup("bash", "git status")[0] == "allow"
    assert pol.lookup("bash", "rm -rf /")[0] == "ask"
    for p in policies.values():
        assert p.warnings == (), p.warnings


def test_star_permission_key_covers_unlisted_permissions(tmp_path: Path) -> None:
    from gatekeeper.policy import load_policy_file

    path = tmp_path / "a.md"
    path.write_text('---\npermission:\n  "*": deny\n  bash:\n    "*": ask\n---\n')
    pol = load_policy_file(path)
    assert pol.lookup("webfetch", "https://x")[0] == "deny"
    assert pol.lookup("edit", "x.py")[0] == "deny"
    assert pol.lookup("bash", "ls")[0] == "ask"


def test_misspelt_tool_name_is_a_warning(tmp_path: Path) -> None:
    from gatekeeper.policy import load_policy_file

    path = tmp_path / "a.md"
    path.write_text("---\ntools:\n  bsah: false\n  mcp_*: false\n---\n")
    pol = load_policy_file(path)
    assert any("tools.bsah" in w and "'bash'" in w for w in pol.warnings)
    assert not any("mcp_" in w for w in pol.warnings)


def test_command_test_case_with_permission_is_an_error(tmp_path: Path) -> None:
    from gatekeeper.errors import PolicyError
    from gatekeeper.policy import load_policy_file

    path = tmp_path / "a.md"
    path.write_text(
        "---\ngatekeeper:\n  tests:\n    - {command: ls, permission: edit, expect: ask}\n---\n"
    )
    with pytest.raises(PolicyError, match="goes with path"):
        load_policy_file(path)
