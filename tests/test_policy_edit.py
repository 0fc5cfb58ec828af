"""add_allow_rule: an "always allow" written into the agent file, in place and deny-safe."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.errors import PolicyError
from gatekeeper.policy import Policy, parse_policy
from gatekeeper.policy_edit import add_allow_rule

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "policies" / "backend-engineer.md"
DEFAULT = REPO / "policies" / "default.md"
T = TypeVar("T")


def agent(frontmatter: str, body: str = "\n# Prompt\n\nDo things.\n") -> str:
    return f"---\n{frontmatter.strip(chr(10))}\n---\n{body}"


def is_subsequence(old: Sequence[T], new: Sequence[T]) -> bool:
    it = iter(new)
    return all(any(line == candidate for candidate in it) for line in old)


def pairs(policy: Policy, permission: str) -> list[tuple[str, str]]:
    rs = policy.rulesets.get(permission)
    return [(r.pattern, r.action) for r in rs.rules] if rs else []


def inserted_only(old: str, new: str, count: int = 1) -> None:
    """``new`` is ``old`` with exactly ``count`` lines added and nothing else changed."""
    old_lines, new_lines = old.split("\n"), new.split("\n")
    assert len(new_lines) == len(old_lines) + count
    assert is_subsequence(old_lines, new_lines)


def edit_error(text: str, permission: str, pattern: str, subject: str | None = None) -> str:
    with pytest.raises(PolicyError) as info:
        add_allow_rule(text, "agent.md", permission, pattern, subject)
    return str(info.value)


# --------------------------------------------------------------------------------------------
# The example agent file


def test_example_file_keeps_every_line_and_gains_one() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    new, line = add_allow_rule(text, str(EXAMPLE), "bash", "make test*", subject="make test -k x")
    inserted_only(text, new)
    new_lines = new.split("\n")
    assert new_lines[line - 1] == '    "make test*": allow'
    # No deny rule in bash: the rule goes at the end of the bash map, after the force push ask.
    assert new_lines[line - 2] == '    "git push --force*": "ask"'
    assert new_lines[line] == "  edit:"
    old, pol = parse_policy(text, str(EXAMPLE)), parse_policy(new, str(EXAMPLE))
    assert pairs(pol, "bash") == [*pairs(old, "bash"), ("make test*", "allow")]
    assert pol.lookup("bash", "make test -k x")[0] == "allow"
    assert pol.lookup("bash", "git push --force origin")[0] == "ask"
    assert new.count("#") == text.count("#")
    assert new.endswith(text.split("---\n", 2)[2])  # the markdown body, byte for byte


@pytest.mark.parametrize("permission", ["edit", "write"])
def test_example_file_edit_and_write_maps(permission: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    new, line = add_allow_rule(text, "backend-engineer.md", permission, "src/*", "src/app.py")
    inserted_only(text, new)
    pol = parse_policy(new, "backend-engineer.md")
    rule = pol.rulesets[permission].rules[-1]
    assert (rule.pattern, rule.action, rule.source) == (
        "src/*",
        "allow",
        f"backend-engineer.md:{line}",
    )
    assert pol.lookup(permission, "src/app.py")[0] == "allow"
    assert pol.lookup(permission, "README.md")[0] == "ask"


# --------------------------------------------------------------------------------------------
# Placement: before the first deny rule


RM_POLICY = agent(
    """
description: rm test
permission:
  bash:
    "*": ask
    "ls *": allow
    "rm *": deny
    "sudo *": deny
"""
)


def test_allow_goes_before_first_deny_and_deny_still_wins() -> None:
    new, line = add_allow_rule(RM_POLICY, "agent.md", "bash", "rm -rf build*")
    inserted_only(RM_POLICY, new)
    lines = new.split("\n")
    assert lines[line - 1] == '    "rm -rf build*": allow'
    assert lines[line] == '    "rm *": deny'
    pol = parse_policy(new, "agent.md")
    assert pairs(pol, "bash") == [
        ("*", "ask"),
        ("ls *", "allow"),
        ("rm -rf build*", "allow"),
        ("rm *", "deny"),
        ("sudo *", "deny"),
    ]
    # "rm *" matches "rm -rf build" too and comes later: the deny still wins everywhere.
    assert pol.lookup("bash", "rm -rf /")[0] == "deny"
    assert pol.lookup("bash", "rm -rf build")[0] == "deny"


def test_subject_still_denied_is_refused_with_the_deny_line() -> None:
    msg = edit_error(RM_POLICY, "bash", "rm -rf build*", subject="rm -rf build")
    assert msg.startswith("agent.md:7:"), msg
    assert "'rm *': deny" in msg
    assert "deny rule always wins" in msg


def test_later_ask_rule_overriding_the_allow_is_refused() -> None:
    text = agent(
        """
permission:
  bash:
    "*": ask
    "sudo *": deny
    "git *": ask
"""
    )
    msg = edit_error(text, "bash", "git status*", subject="git status")
    # The ask rule is line 6 of the file as it is (the edit was not applied).
    assert msg.startswith("agent.md:6:"), msg
    assert "add the rule by hand after line 6" in msg
    # Without a subject the placement is still done (the caller did not ask for a check).
    new, line = add_allow_rule(text, "agent.md", "bash", "git status*")
    assert line == 5
    assert new.split("\n")[4] == '    "git status*": allow'


def test_comments_above_the_first_deny_stay_with_it() -> None:
    text = DEFAULT.read_text(encoding="utf-8")
    new, line = add_allow_rule(text, "default.md", "bash", "rm -rf build*", "rm -rf build/x")
    inserted_only(text, new)
    lines = new.split("\n")
    assert lines[line - 2] == '    "git --version": allow'
    assert lines[line] == "    # Never from an agent: root, disks, the machine's power."
    assert lines[line + 1] == '    "sudo *": deny'
    pol = parse_policy(new, "default.md")
    for denied in ("sudo rm -rf /", "rm -rf ~", "shutdown now", "dd if=x of=/dev/sda"):
        assert pol.lookup("bash", denied)[0] == "deny"
    assert pol.lookup("bash", "rm -rf build/x")[0] == "allow"
    # The subjects of the file's own test cases are decided as before.
    old = parse_policy(text, "default.md")
    for case in pol.tests:
        assert (
            pol.lookup(case.permission, case.subject)[0]
            == old.lookup(case.permission, case.subject)[0]
        )


def test_deny_first_in_map_goes_right_after_the_key() -> None:
    text = agent(
        """
permission:
  bash:
    # no sudo
    "sudo *": deny
"""
    )
    new, line = add_allow_rule(text, "agent.md", "bash", "ls", "ls")
    assert line == 4
    assert new.split("\n")[2:6] == [
        "  bash:",
        '    "ls": allow',
        "    # no sudo",
        '    "sudo *": deny',
    ]


def test_indentation_of_entries_is_matched() -> None:
    text = agent('permission:\n    bash:\n        "*": ask\n        "x": deny\n')
    new, line = add_allow_rule(text, "agent.md", "bash", "y")
    assert new.split("\n")[line - 1] == '        "y": allow'


# --------------------------------------------------------------------------------------------
# Scalars turned into maps, keys added


def test_permission_scalar_becomes_map_and_keeps_quoting_and_comment() -> None:
    text = agent(
        """
description: a
permission:
  bash:   'ask'   # commands ask
mode: primary
"""
    )
    new, line = add_allow_rule(text, "agent.md", "bash", "npm test", "npm test")
    assert new.split("\n")[2:7] == [
        "permission:",
        "  bash:",
        "    \"*\": 'ask'  # commands ask",
        '    "npm test": allow',
        "mode: primary",
    ]
    assert line == 6
    pol = parse_policy(new, "agent.md")
    assert pairs(pol, "bash") == [("*", "ask"), ("npm test", "allow")]


def test_whole_permission_ask_becomes_a_map_with_star() -> None:
    text = agent("description: a\npermission: ask  # be careful\nmode: primary\n")
    new, line = add_allow_rule(text, "agent.md", "bash", "npm test", "npm test")
    assert new.split("\n")[2:7] == [
        "permission:",
        '  "*": ask  # be careful',
        "  bash:",
        '    "npm test": allow',
        "mode: primary",
    ]
    assert line == 6
    pol = parse_policy(new, "agent.md")
    assert pol.fallback is not None
    assert [(r.pattern, r.action) for r in pol.fallback.rules] == [("*", "ask")]
    assert pol.lookup("bash", "npm test")[0] == "allow"
    assert pol.lookup("edit", "x.py")[0] == "ask"
    assert pol.lookup("webfetch", "https://x")[0] == "ask"


def test_whole_permission_allow_is_already_allowed() -> None:
    msg = edit_error(agent("permission: allow\n"), "bash", "ls")
    assert msg.startswith("agent.md:2:")
    assert "already allowed" in msg


@pytest.mark.parametrize(
    "frontmatter",
    ["permission: deny\n", "permission:\n  bash: deny\n", 'permission:\n  "*": deny\n'],
)
def test_a_deny_everything_is_not_turned_into_an_allow(frontmatter: str) -> None:
    # Rewriting `permission: deny` as `"*": deny` + `bash: {"ls": allow}` would make every
    # other command ask instead of deny; an allow before a catch-all deny would never count.
    msg = edit_error(agent(frontmatter), "bash", "ls", subject="ls")
    assert "deny rule always wins" in msg
    assert "by hand" in msg


def test_missing_permission_key_is_added_at_end_of_permission_map() -> None:
    text = agent(
        """
permission:
  bash:
    "*": ask
  # edits
  edit: ask
# unrelated comment
version: "1"
"""
    )
    new, line = add_allow_rule(text, "agent.md", "webfetch", "https://docs.python.org/*")
    inserted_only(text, new, 2)
    assert new.split("\n")[5:9] == [
        "  edit: ask",
        "  webfetch:",
        '    "https://docs.python.org/*": allow',
        "# unrelated comment",
    ]
    assert line == 8
    assert pairs(parse_policy(new, "agent.md"), "webfetch") == [
        ("https://docs.python.org/*", "allow")
    ]


def test_no_permission_key_appends_a_block_before_closing_line() -> None:
    text = agent("description: a\ntools:\n   bash: true\n# last comment\n")
    new, line = add_allow_rule(text, "agent.md", "bash", "ls *", "ls -la")
    inserted_only(text, new, 3)
    assert new.split("\n")[5:9] == ["permission:", "   bash:", '      "ls *": allow', "---"]
    assert line == 8
    assert parse_policy(new, "agent.md").lookup("bash", "ls -la")[0] == "allow"


def test_empty_frontmatter() -> None:
    new, line = add_allow_rule("---\n---\nbody\n", "agent.md", "edit", "docs/*")
    assert new == '---\npermission:\n  edit:\n    "docs/*": allow\n---\nbody\n'
    assert line == 4


def test_write_without_own_rules_follows_edit_and_is_not_silently_replaced() -> None:
    text = agent('permission:\n  edit:\n    "*": ask\n    "*.env": deny\n')
    msg = edit_error(text, "write", "notes.txt", subject="notes.txt")
    assert msg.startswith("agent.md:5:"), msg
    assert "follows the rules of permission.edit" in msg
    # Only-ask edit rules: a write map of its own changes nothing else.
    new, _ = add_allow_rule(agent("permission:\n  edit: ask\n"), "a.md", "write", "notes.txt")
    assert parse_policy(new, "a.md").lookup("write", "other.txt")[0] == "ask"


def test_star_permission_with_rules_is_not_silently_replaced() -> None:
    text = agent('permission:\n  "*":\n    "*": ask\n    "secret*": deny\n')
    msg = edit_error(text, "bash", "ls")
    assert "follows the rules of permission.*" in msg


def test_tools_false_is_refused() -> None:
    msg = edit_error(agent("tools:\n  bash: false\npermission:\n  bash: ask\n"), "bash", "ls")
    assert msg.startswith("agent.md:3:"), msg
    assert "tools.bash: false" in msg


# --------------------------------------------------------------------------------------------
# Text fidelity: quoting, CRLF, BOM


@pytest.mark.parametrize(
    ("pattern", "written"),
    [
        ('echo "hi"', r'"echo \"hi\""'),
        ("C:\\tmp\\*", r'"C:\\tmp\\*"'),
        ("it's # not a comment: ok", '"it\'s # not a comment: ok"'),
        ("grüße *", '"grüße *"'),
        ("- * &x !tag", '"- * &x !tag"'),
    ],
)
def test_pattern_is_a_double_quoted_yaml_string(pattern: str, written: str) -> None:
    new, line = add_allow_rule(RM_POLICY, "agent.md", "bash", pattern)
    assert new.split("\n")[line - 1] == f"    {written}: allow"
    assert "allow" in dict(pairs(parse_policy(new, "agent.md"), "bash")).get(pattern, "")


@pytest.mark.parametrize(
    "pattern", ["a\nb", "a\rb", "tab\there", "\x1b[31m", "a\u202eb", "a\u2028b", ""]
)
def test_control_characters_and_empty_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PolicyError, match="pattern"):
        add_allow_rule(RM_POLICY, "agent.md", "bash", pattern)


def test_crlf_and_bom_are_kept() -> None:
    text = "\ufeff" + RM_POLICY.replace("\n", "\r\n")
    new, line = add_allow_rule(text, "agent.md", "bash", "make", "make")
    assert new.startswith("\ufeff---\r\n")
    assert new.count("\n") == new.count("\r\n") == text.count("\r\n") + 1
    assert new.split("\r\n")[line - 1] == '    "make": allow'
    assert parse_policy(new, "agent.md").lookup("bash", "make")[0] == "allow"


def test_crlf_scalar_replacement() -> None:
    text = agent("permission: ask # c\n").replace("\n", "\r\n")
    new, _ = add_allow_rule(text, "agent.md", "bash", "ls")
    assert "\n" not in new.replace("\r\n", "")
    assert new.split("\r\n")[1:5] == [
        "permission:",
        '  "*": ask  # c',
        "  bash:",
        '    "ls": allow',
    ]


# --------------------------------------------------------------------------------------------
# What is left to a human


@pytest.mark.parametrize(
    ("frontmatter", "line"),
    [
        ('permission:\n  bash: {"*": ask}\n', 3),
        ("permission: {bash: ask}\n", 2),
        ("{permission: ask}\n", 2),
        ('base: &b\n  "*": ask\npermission:\n  bash: *b\n', 2),
        ('permission:\n  bash:\n    "*": &a ask\n', 4),
        ("permission:\n  bash:\n    ask\n", 3),
        ("permission:\n  bash: >-\n    ask\n", 3),
    ],
)
def test_unplaceable_frontmatter_asks_for_a_hand_edit(frontmatter: str, line: int) -> None:
    msg = edit_error(agent(frontmatter), "bash", "ls")
    assert msg.startswith(f"agent.md:{line}:"), msg
    assert "by hand" in msg


def test_complex_key_is_refused() -> None:
    msg = edit_error(agent('permission:\n  bash:\n    ? "rm *"\n    : deny\n'), "bash", "ls")
    assert "by hand" in msg


def test_existing_pattern_is_not_duplicated() -> None:
    msg = edit_error(RM_POLICY, "bash", "rm *")
    assert msg.startswith("agent.md:7:")
    assert "already has a rule" in msg
    assert "already allowed" in edit_error(RM_POLICY, "bash", "ls *")
    assert "already has a rule for '*'" in edit_error(
        agent("permission:\n  bash: ask\n"), "bash", "*"
    )


def test_subject_not_matched_by_pattern() -> None:
    msg = edit_error(RM_POLICY, "bash", "npm test", subject="npm install")
    assert "does not match" in msg


def test_broken_file_and_bad_permission_name() -> None:
    with pytest.raises(PolicyError, match="frontmatter"):
        add_allow_rule("no frontmatter\n", "agent.md", "bash", "ls")
    with pytest.raises(PolicyError, match="not a permission name"):
        add_allow_rule(RM_POLICY, "agent.md", "Bash!", "ls")


def test_the_edit_is_pure() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    first = add_allow_rule(text, "x.md", "bash", "make*")
    assert add_allow_rule(text, "x.md", "bash", "make*") == first
    assert EXAMPLE.read_text(encoding="utf-8") == text


# --------------------------------------------------------------------------------------------
# Properties

PATTERNS = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
        blacklist_characters="\ufffe\uffff",
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patterns=st.lists(PATTERNS, min_size=1, max_size=4, unique=True),
    permissions=st.lists(
        st.sampled_from(["bash", "edit", "write", "webfetch", "read"]), min_size=4, max_size=4
    ),
)
def test_random_inserts_into_the_example_keep_old_rules(
    patterns: list[str], permissions: list[str]
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    original = parse_policy(text, "backend-engineer.md")
    for pattern, permission in zip(patterns, permissions, strict=False):
        before = parse_policy(text, "backend-engineer.md")
        if pattern in dict(pairs(before, permission)):
            continue
        new, line = add_allow_rule(text, "backend-engineer.md", permission, pattern)
        added = 1 if permission in before.rulesets else 2
        inserted_only(text, new, added)
        after = parse_policy(new, "backend-engineer.md")
        rules = after.rulesets[permission].rules
        mine = next(r for r in rules if r.pattern == pattern)
        assert (mine.action, mine.source) == ("allow", f"backend-engineer.md:{line}")
        for perm in ("bash", "edit", "write"):
            old_pairs, new_pairs = pairs(before, perm), pairs(after, perm)
            assert is_subsequence(old_pairs, new_pairs)
            assert len(new_pairs) == len(old_pairs) + (perm == permission)
        text = new
    final = parse_policy(text, "backend-engineer.md")
    for perm in original.rulesets:
        assert is_subsequence(pairs(original, perm), pairs(final, perm))


DENIED = ["sudo rm -rf /", "rm -rf ~", "rm -rf / x", "mkfs /dev/sda", "reboot now", "su root"]


@settings(max_examples=150, deadline=None)
@given(pattern=PATTERNS | st.sampled_from(["*", "sudo *", "rm *", "rm -rf *", "s*", "mkfs*"]))
def test_random_allow_never_lifts_a_deny_in_default(pattern: str) -> None:
    text = DEFAULT.read_text(encoding="utf-8")
    old = parse_policy(text, "default.md")
    if pattern in dict(pairs(old, "bash")):
        return
    new, line = add_allow_rule(text, "default.md", "bash", pattern)
    inserted_only(text, new)
    pol = parse_policy(new, "default.md")
    rules = pol.rulesets["bash"].rules
    first_deny = next(i for i, r in enumerate(rules) if r.action == "deny")
    assert rules[first_deny - 1].pattern == pattern
    assert rules[first_deny - 1].source == f"default.md:{line}"
    for subject in [*DENIED, pattern]:
        if old.lookup("bash", subject)[0] == "deny":
            assert pol.lookup("bash", subject)[0] == "deny"
