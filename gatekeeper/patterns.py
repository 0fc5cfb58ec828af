"""Permission patterns: the glob language of agent files, compiled once, matched many times.

Meaning (architecture.md §2, compatible with opencode's ``Wildcard.match``):

* a pattern is anchored at both ends of the subject;
* ``*`` matches any run of characters, including spaces, ``/`` and newlines;
* ``?`` matches exactly one character;
* a pattern that ends in `` *`` (space, star) also matches the subject without that tail,
  so ``"ls *"`` matches ``ls`` and ``ls -la`` but not ``lsblk``;
* everything else is literal and case-sensitive;
* the last matching rule in file order wins.

:class:`Matcher` answers "which is the last rule that matches?" at a cost that does not grow
with the number of rules. Patterns without wildcards (and the bare form of ``"ls *"``) are one
dictionary lookup of the whole subject. The others are bucketed by their literal prefix (the
text before the first wildcard); every prefix *of* a literal prefix is indexed too, so a
subject walks that index one character at a time and stops at the first of its own prefixes
that no rule starts with: the walk is bounded by the longest literal prefix the subject shares
with some rule, not by the rule count, and only the buckets on that path are checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WILDCARDS = "*?"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate one pattern into an anchored regular expression (the reference semantics)."""
    tail = pattern.endswith(" *")
    out: list[str] = []
    for ch in pattern[:-2] if tail else pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    if tail:
        # "ls *" also matches plain "ls": the space and the tail are optional together.
        out.append("(?: .*)?")
    return re.compile("".join(out), re.DOTALL)


def literal_prefix(pattern: str) -> str:
    """The text of ``pattern`` before its first wildcard (all of it if it has none)."""
    for i, ch in enumerate(pattern):
        if ch in _WILDCARDS:
            return pattern[:i]
    return pattern


@dataclass(frozen=True, slots=True)
class _Compiled:
    index: int
    kind: int  # 0: literal, 1: prefix + "*", 2: needs the regex
    prefix: str
    regex: re.Pattern[str] | None
    # For "ls *": the subject may also equal the prefix without its trailing space.
    bare: str | None


def _compile_one(index: int, pattern: str) -> _Compiled:
    prefix = literal_prefix(pattern)
    if prefix == pattern:
        return _Compiled(index, 0, prefix, None, None)
    if pattern == prefix + "*":
        bare = prefix[:-1] if prefix.endswith(" ") else None
        return _Compiled(index, 1, prefix, None, bare)
    bare = None
    if pattern.endswith(" *"):
        # The optional-tail form can match a subject shorter than the literal prefix only
        # when the prefix itself runs into the final " *" (e.g. "ls *" has prefix "ls ").
        stem = pattern[:-2]
        if literal_prefix(stem) == stem:
            bare = stem
    return _Compiled(index, 2, prefix, pattern_regex(pattern), bare)


class Matcher:
    """All patterns of one permission, compiled; answers the index of the last matching one."""

    __slots__ = ("_exact", "_index", "_patterns", "_root")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = tuple(patterns)
        buckets: dict[str, list[_Compiled]] = {}
        exact: dict[str, int] = {}
        for i, pattern in enumerate(self._patterns):
            c = _compile_one(i, pattern)
            if c.kind == 0:
                exact[pattern] = i  # later rules overwrite earlier ones: last wins
                continue
            buckets.setdefault(c.prefix, []).append(c)
            if c.bare is not None:
                exact[c.bare] = i
        # Newest rule first inside a bucket, so a bucket can stop at its first hit. Every
        # prefix of a literal prefix is a key (with no rules of its own unless it is one).
        index: dict[str, tuple[_Compiled, ...]] = {}
        for prefix in buckets:
            for k in range(1, len(prefix)):
                index.setdefault(prefix[:k], ())
        for prefix, bucket in buckets.items():
            index[prefix] = tuple(reversed(bucket))
        self._root = index.pop("", ())
        self._index = index
        self._exact = exact

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._patterns

    def __len__(self) -> int:
        return len(self._patterns)

    def match(self, subject: str) -> int | None:
        """Index of the last pattern (in file order) that matches ``subject``, or None."""
        best = self._exact.get(subject, -1)
        best = _scan(self._root, subject, best)
        index = self._index
        for length in range(1, len(subject) + 1):
            bucket = index.get(subject[:length])
            if bucket is None:
                break
            if bucket:
                best = _scan(bucket, subject, best)
        return best if best >= 0 else None


def _scan(bucket: tuple[_Compiled, ...], subject: str, best: int) -> int:
    """The best index after checking one bucket (newest rule first) against ``subject``."""
    for c in bucket:
        if c.index <= best:
            return best
        if c.kind == 1 or (c.regex is not None and c.regex.fullmatch(subject)):
            return c.index
    return best


def naive_match(patterns: Iterable[str], subject: str) -> int | None:
    """Reference implementation: try every pattern's regex, keep the last hit."""
    found: int | None = None
    for i, pattern in enumerate(patterns):
        if pattern_regex(pattern).fullmatch(subject) is not None:
            found = i
    return found
