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
with the number of rules: rules are bucketed by their literal prefix (the text before the first
wildcard), and a subject only looks up the buckets for the few distinct prefix *lengths* that
exist, which is bounded by the longest prefix, not by the rule count.
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

    __slots__ = ("_bare", "_buckets", "_lengths", "_patterns")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = tuple(patterns)
        buckets: dict[str, list[_Compiled]] = {}
        bare: dict[str, int] = {}
        for i, pattern in enumerate(self._patterns):
            c = _compile_one(i, pattern)
            buckets.setdefault(c.prefix, []).append(c)
            if c.bare is not None:
                bare[c.bare] = i  # later rules overwrite earlier ones: last wins
        # Newest rule first inside a bucket, so a bucket can stop at its first hit.
        self._buckets = {k: tuple(reversed(v)) for k, v in buckets.items()}
        self._lengths = tuple(sorted({len(k) for k in buckets}))
        self._bare = bare

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._patterns

    def __len__(self) -> int:
        return len(self._patterns)

    def match(self, subject: str) -> int | None:
        """Index of the last pattern (in file order) that matches ``subject``, or None."""
        best = self._bare.get(subject, -1)
        n = len(subject)
        buckets = self._buckets
        for length in self._lengths:
            if length > n:
                break
            bucket = buckets.get(subject[:length])
            if bucket is None:
                continue
            for c in bucket:
                if c.index <= best:
                    break
                if c.kind == 0:
                    if length == n:
                        best = c.index
                        break
                elif c.kind == 1 or (c.regex is not None and c.regex.fullmatch(subject)):
                    best = c.index
                    break
        return best if best >= 0 else None


def naive_match(patterns: Iterable[str], subject: str) -> int | None:
    """Reference implementation: try every pattern's regex, keep the last hit."""
    found: int | None = None
    for i, pattern in enumerate(patterns):
        if pattern_regex(pattern).fullmatch(subject) is not None:
            found = i
    return found
