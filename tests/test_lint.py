from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gatekeeper.lint import explain_policy, lint_policy, shadowed
from gatekeeper.policy import load_policy_file
from tests.conftest import DEFAULT, EXAMPLE

WriteAgent = Callable[..., Path]


def messages(path: Path) -> list[str]:
    return [str(f) for f in lint_policy(load_policy_file(path))]


def test_star_last_shadows_everything_before_it(write_agent: WriteAgent) -> None:
    path = write_agent('permission:\n  bash:\n    "npm *": allow\n    "*": ask\n')
    found = messages(path)
    assert any("agent.md:4: error" in m and '"npm *": allow can never win' in m for m in found)
    assert any('"*": ask (agent.md:5)' in m for m in found)


def test_same_action_shadow_is_a_warning(write_agent: WriteAgent) -> None:
    path = write_agent('permission:\n  bash:\n    "git status": allow\n    "git *": allow\n')
    found = messages(path)
    assert any("warning" in m and "never decides anything" in m for m in found)
    assert not any(": error:" in m for m in found)


def test_rule_after_broader_rule_is_fine(write_agent: WriteAgent) -> None:
    path = write_agent(
        'permission:\n  bash:\n    "*": ask\n    "git *": allow\n    "git push *": ask\n'
    )
    assert not any("never" in m for m in messages(path))


def test_bare_form_is_covered_by_space_star() -> None:
    pol = load_policy_file(DEFAULT)
    assert shadowed(pol.rulesets["bash"].rules) == []


def test_shadow_detection_is_exact_for_prefix_shapes(write_agent: WriteAgent) -> None:
    path = write_agent(
        'permission:\n  bash:\n    "ls": deny\n    "ls -l*": deny\n    "ls *": allow\n'
        '    "cat*": deny\n    "cat x*": allow\n'
    )
    pol = load_policy_file(path)
    pairs = {(a.pattern, b.pattern) for a, b in shadowed(pol.rulesets["bash"].rules)}
    assert pairs == {("ls", "ls *"), ("ls -l*", "ls *")}


def test_word_boundary_warning_names_real_commands() -> None:
    found = messages(EXAMPLE)
    assert any('"go*" has no word boundary' in m and "gofmt" in m for m in found)
    assert any('"pip*" has no word boundary' in m and "pipenv" in m for m in found)
    assert not any('"git status*" has no word boundary' in m for m in found)
    # `git diff*` also allows `git difftool --extcmd=…` and `git diff-tree --output=…`
    assert any('"git diff*" has no word boundary' in m and "git difftool" in m for m in found)


def test_risky_allows_in_the_example_agent() -> None:
    found = messages(EXAMPLE)
    assert any('risky allow: "npm*"' in m and "npm exec" in m for m in found)
    assert any('risky allow: "docker run*"' in m and "--privileged" in m for m in found)


def test_risky_allow_silenced_by_a_narrower_rule(write_agent: WriteAgent) -> None:
    path = write_agent(
        'permission:\n  bash:\n    "*": ask\n    "pip *": allow\n    "pip install *": ask\n'
    )
    assert not any("risky" in m for m in messages(path))


def test_failing_test_case_is_an_error(write_agent: WriteAgent) -> None:
    path = write_agent(
        'permission:\n  bash:\n    "*": ask\n    "npm *": allow\n'
        "gatekeeper:\n  tests:\n"
        '    - { command: "npm test", expect: allow }\n'
        '    - { command: "npm test && rm -rf /", expect: allow }\n'
    )
    found = messages(path)
    errors = [m for m in found if ": error:" in m]
    assert len(errors) == 1
    assert "agent.md:9" in errors[0]
    assert "`npm test && rm -rf /` is ask, expected allow" in errors[0]


def test_bundled_policies_pass_their_own_tests() -> None:
    assert [m for m in messages(DEFAULT) if ": error:" in m] == []


def test_explain_lists_rules_in_order_with_lines() -> None:
    lines = explain_policy(load_policy_file(EXAMPLE))
    text = "\n".join(lines)
    assert "1. '*'" in text
    assert "backend-engineer.md:21" in text
    assert text.index("'npm*'") < text.index("'git push --force*'")


def test_rules_that_can_never_match_are_named(write_agent: WriteAgent) -> None:
    policy = load_policy_file(
        write_agent(
            "permission:\n"
            '  bash:\n    "*": ask\n    "git  push *": deny\n    "echo \'hi\'": allow\n'
            '    "npm test": allow\n'
            '  edit:\n    "./src/*": allow\n    "src/a/../b": deny\n    "~/notes/*": allow\n'
            '    "docs/*": allow\n'
            '  external_directory:\n    "tmp/*": allow\n    "/tmp/*": allow\n'
        )
    )
    never = {
        f.message.split('"')[1]
        for f in lint_policy(policy)
        if "never" in f.message or "only a command spelled" in f.message
    }
    assert never == {"git  push *", "echo 'hi'", "./src/*", "src/a/../b", "~/notes/*", "tmp/*"}


def test_an_agent_allowed_to_rewrite_its_harness_settings_is_warned_about(
    write_agent: WriteAgent,
) -> None:
    loose = load_policy_file(write_agent('permission:\n  edit:\n    "*": allow\n'))
    found = [f.message for f in lint_policy(loose) if "harness's settings" in f.message]
    assert [m.split()[0] for m in found] == ["edit", "write"]  # write falls back to edit
    assert ".claude/settings.json" in found[0] and "opencode.json" in found[0]
    guarded = load_policy_file(
        write_agent(
            'permission:\n  edit:\n    "*": allow\n    ".claude*": ask\n    ".codex*": ask\n'
            '    ".opencode*": ask\n    "opencode.json*": ask\n',
            name="guarded",
        )
    )
    assert not [f for f in lint_policy(guarded) if "harness's settings" in f.message]
