"""Pattern semantics (architecture.md §2) and the fast matcher against a naive reference.

The reference below does not use regular expressions at all: it is a plain dynamic-programming
glob matcher, so it cannot share a bug with ``pattern_regex``'s translation.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatekeeper.patterns import Matcher, literal_prefix, naive_match, pattern_regex

# --------------------------------------------------------------------------------------------
# The naive reference


def glob(pattern: str, subject: str) -> bool:
    """Anchored glob: ``*`` any run (anything at all), ``?`` one character, the rest literal."""
    n = len(subject)
    # reach[j]: the pattern read so far matches subject[:j].
    reach = [True] + [False] * n
    for ch in pattern:
        if ch == "*":
            seen = False
            nxt = []
            for j in range(n + 1):
                seen = seen or reach[j]
                nxt.append(seen)
        elif ch == "?":
            nxt = [False, *reach[:n]]
        else:
            nxt = [False] + [reach[j] and subject[j] == ch for j in range(n)]
        reach = nxt
    return reach[n]


def reference_matches(pattern: str, subject: str) -> bool:
    """One pattern: a glob, and a trailing `` *`` may also be left off entirely."""
    if glob(pattern, subject):
        return True
    return pattern.endswith(" *") and glob(pattern[:-2], subject)


def reference_last(patterns: Sequence[str], subject: str) -> int | None:
    """The last index (file order) whose pattern matches, or None."""
    found: int | None = None
    for i, pattern in enumerate(patterns):
        if reference_matches(pattern, subject):
            found = i
    return found


# --------------------------------------------------------------------------------------------
# Examples: the meaning users rely on


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        # anchored at both ends
        ("git status", "git status", True),
        ("git status", "git status -s", False),
        ("git status", "xgit status", False),
        ("status", "git status", False),
        ("", "", True),
        ("", "x", False),
        # * is any run, spaces, / and newlines included
        ("*", "", True),
        ("*", "rm -rf / && echo done", True),
        ("*", "a\nb", True),
        ("git *", "git log --oneline", True),
        ("cat *", "cat /etc/passwd", True),
        ("echo *", "echo a\nb", True),
        ("a*b", "ab", True),
        ("a*b", "a/x y\nb", True),
        ("a*b", "a/x y\nbc", False),
        ("*.py", "src/pkg/mod.py", True),
        ("*.py", "mod.pyc", False),
        # ? is exactly one character
        ("l?", "ls", True),
        ("l?", "l", False),
        ("l?", "lss", False),
        ("a?c", "a\nc", True),
        ("a?c", "a/c", True),
        ("?", "é", True),
        ("??", "é", False),
        # trailing " *" may be left off with its space
        ("ls *", "ls", True),
        ("ls *", "ls -la", True),
        ("ls *", "ls ", True),
        ("ls *", "lsblk", False),
        ("ls *", "l", False),
        ("ls*", "lsblk", True),
        ("ls*", "ls", True),
        ("go*", "gofmt -w .", True),
        ("git push *", "git push", True),
        ("git push *", "git pushy", False),
        ("git push *", "git", False),
        ("a ? *", "a b", True),
        ("a ? *", "a b c", True),
        ("a ? *", "a", False),
        (" *", "", True),
        (" *", " x", True),
        (" *", "x", False),
        ("ls  *", "ls ", True),  # only the last " *" is optional: "ls " remains
        ("ls  *", "ls", False),
        ("* *", "", True),  # the tail dropped leaves "*", which matches ""
        ("* *", "anything", True),  # "*" alone (tail dropped) matches it
        # only a trailing " *" is optional, not one in the middle
        ("a * b", "a b", False),
        ("a * b", "a x b", True),
        ("a\t*", "a", False),  # a tab is not a space
        # case-sensitive
        ("git *", "Git status", False),
        ("Makefile", "makefile", False),
        # regular-expression metacharacters are literal
        ("a.c", "abc", False),
        ("a.c", "a.c", True),
        ("a+", "aa", False),
        ("a+", "a+", True),
        ("(x)", "x", False),
        ("(x)", "(x)", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("^ls$", "ls", False),
        ("^ls$", "^ls$", True),
        ("a|b", "a", False),
        ("a|b", "a|b", True),
        ("x{2}", "xx", False),
        ("x{2}", "x{2}", True),
        ("\\d", "1", False),
        ("\\d", "\\d", True),
        ("\\*", "\\anything", True),  # the backslash is literal, the star still a wildcard
        ("\\*", "*", False),
        ("a\\", "a\\", True),
        ("$HOME/*", "$HOME/x", True),
    ],
)
def test_pattern_meaning(pattern: str, subject: str, expected: bool) -> None:
    assert reference_matches(pattern, subject) is expected
    assert (pattern_regex(pattern).fullmatch(subject) is not None) is expected
    assert (Matcher([pattern]).match(subject) == 0) is expected
    assert (naive_match([pattern], subject) == 0) is expected


def test_last_matching_rule_wins() -> None:
    patterns = ["*", "git *", "git push *", "git push --force*", "git *"]
    m = Matcher(patterns)
    assert m.match("git push --force origin") == 4  # the second "git *" comes last
    assert m.match("ls") == 0
    m2 = Matcher(patterns[:4])
    assert m2.match("git push --force origin") == 3
    assert m2.match("git push origin") == 2
    assert m2.match("git push") == 2
    assert m2.match("git status") == 1
    assert m2.match("gitk") == 0


def test_earlier_specific_rule_loses_to_later_general_one() -> None:
    # File order, not specificity, decides: a later "*" overrides everything before it.
    m = Matcher(["rm *", "npm *", "*"])
    assert m.match("rm -rf /") == 2
    assert m.match("npm test") == 2


def test_no_match_is_none() -> None:
    m = Matcher(["git *", "npm test", "ls?"])
    assert m.match("rm -rf /") is None
    assert m.match("") is None
    assert m.match("npm test --watch") is None
    assert Matcher([]).match("anything") is None
    assert naive_match([], "x") is None


def test_same_pattern_twice_last_index() -> None:
    m = Matcher(["ls *", "cat *", "ls *"])
    assert m.match("ls") == 2
    assert m.match("ls -l") == 2
    assert m.match("cat x") == 1


def test_bare_tail_form_respects_order() -> None:
    # "ls" is matched by "ls *" (tail dropped) and by the literal "ls": the later one wins.
    assert Matcher(["ls *", "ls"]).match("ls") == 1
    assert Matcher(["ls", "ls *"]).match("ls") == 1
    assert Matcher(["ls *", "l?"]).match("ls") == 1
    assert Matcher(["l?", "ls *"]).match("ls") == 1
    assert Matcher(["ls *", "x*"]).match("ls") == 0


def test_matcher_exposes_patterns() -> None:
    m = Matcher(("a", "b*"))
    assert m.patterns == ("a", "b*")
    assert len(m) == 2


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("git status *", "git status "), ("a?b", "a"), ("*", ""), ("plain", "plain"), ("", "")],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def test_reference_itself() -> None:
    # The reference must be able to say no, and to say yes on non-trivial inputs.
    assert glob("a*b?c", "aXYZbQc")
    assert not glob("a*b?c", "aXYZbc")
    assert glob("**", "")
    assert not glob("?", "")
    assert reference_matches("x *", "x")
    assert not reference_matches("x*y *", "x")
    assert reference_matches("x*y *", "xzy")


# --------------------------------------------------------------------------------------------
# Properties: Matcher == naive_match == the reference, on nasty alphabets

# Pattern characters: wildcards, space, slash, newline, regex specials, a few letters, non-ASCII.
PATTERN_CHARS = "ab *?/ .\\()[]{}+^$|-\n\té"
# Subject characters also include literal "*" and "?" (a command can contain them).
SUBJECT_CHARS = "ab */ .\\()[]{}+^$|-?\n\té"

# Shared prefixes make many patterns fall in the same buckets.
PREFIXES = ["", "a", "ab", "a b", "ab ", "a.b", "a/b", "a*", "a?", "(a", "\\a", "a b a"]
SUFFIXES = ["", "*", " *", "?", "? *", "b", " b", "* b", "*b *", ".", "$", " a *", "**", "?*"]

pattern_st = st.one_of(
    st.text(alphabet=PATTERN_CHARS, max_size=8),
    st.builds(
        lambda p, mid, s: p + mid + s,
        st.sampled_from(PREFIXES),
        st.text(alphabet="ab .*?", max_size=3),
        st.sampled_from(SUFFIXES),
    ),
)
patterns_st = st.lists(pattern_st, max_size=14)
free_subject_st = st.text(alphabet=SUBJECT_CHARS, max_size=12)


@st.composite
def instance_of(draw: st.DrawFn, pattern: str) -> str:
    """A subject built from ``pattern`` so that it usually matches, then perhaps mangled."""
    if pattern.endswith(" *") and draw(st.booleans()):
        pattern = pattern[:-2]
    out: list[str] = []
    for ch in pattern:
        if ch == "*":
            out.append(draw(st.text(alphabet=SUBJECT_CHARS, max_size=4)))
        elif ch == "?":
            out.append(draw(st.sampled_from(SUBJECT_CHARS)))
        else:
            out.append(ch)
    subject = "".join(out)
    mangle = draw(st.integers(0, 5))
    if mangle == 1 and subject:
        subject = subject[:-1]
    elif mangle == 2:
        subject += draw(st.sampled_from(SUBJECT_CHARS))
    elif mangle == 3 and subject:
        i = draw(st.integers(0, len(subject) - 1))
        subject = subject[:i] + draw(st.sampled_from(SUBJECT_CHARS)) + subject[i + 1 :]
    return subject


@st.composite
def rules_and_subject(draw: st.DrawFn) -> tuple[list[str], str]:
    patterns = draw(patterns_st)
    if patterns and draw(st.integers(0, 3)) > 0:
        subject = draw(instance_of(draw(st.sampled_from(patterns))))
    else:
        subject = draw(free_subject_st)
    return patterns, subject


PROPERTY = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(rules_and_subject())
@example((["ls *", "ls"], "ls"))
@example((["ls", "ls *"], "ls"))
@example((["a b *", "a *"], "a"))
@example(([" *", "*"], ""))
@example((["*", " *"], ""))
@example((["a*", "a * *"], "a "))
@example((["a?*", "ab"], "ab"))
@example((["a.b *", "a?b"], "a.b"))
@example((["(a *", "(a"], "(a"))
@example((["a", "a *", "a*", "a?"], "a"))
def test_matcher_agrees_with_reference(case: tuple[list[str], str]) -> None:
    patterns, subject = case
    expected = reference_last(patterns, subject)
    assert Matcher(patterns).match(subject) == expected
    assert naive_match(patterns, subject) == expected


@PROPERTY
@given(pattern_st, st.data())
def test_single_pattern_regex_agrees_with_reference(pattern: str, data: st.DataObject) -> None:
    subject = data.draw(st.one_of(instance_of(pattern), free_subject_st))
    expected = reference_matches(pattern, subject)
    assert (pattern_regex(pattern).fullmatch(subject) is not None) is expected
    assert (Matcher([pattern]).match(subject) == 0) is expected


@settings(max_examples=300, deadline=None)
@given(patterns_st, st.lists(free_subject_st, max_size=10), st.data())
def test_one_matcher_many_subjects(
    patterns: list[str], subjects: list[str], data: st.DataObject
) -> None:
    # A compiled matcher holds no state between lookups.
    m = Matcher(patterns)
    if patterns:
        subjects += [data.draw(instance_of(p)) for p in patterns]
    for subject in subjects:
        assert m.match(subject) == reference_last(patterns, subject)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=6), st.data())
def test_many_rules_same_bucket(prefixes: list[str], data: st.DataObject) -> None:
    # Hundreds of rules in few buckets, as in a generated policy: the order still decides.
    patterns = [p + data.draw(st.sampled_from(SUFFIXES)) for p in prefixes for _ in range(40)]
    subject = data.draw(instance_of(data.draw(st.sampled_from(patterns))))
    assert Matcher(patterns).match(subject) == reference_last(patterns, subject)
