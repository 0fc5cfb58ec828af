"""bash's canonical print of a *plain* line, read directly.

``bash --pretty-print`` reprints what it parsed in one canonical spelling: words separated by
single blanks, ``a; b``, ``a && b``, ``2>&1 |`` for ``|&``, ``> out`` for ``>out``. When that
print holds nothing but plain words (letters, digits and ``_ . / : , + @ % ^ = -``), list and
pipe operators and simple redirections, it can be read without a shell parser: no quoting, no
expansion, no reserved word is left to interpret, so the reading is bash's own. Anything else
— a quote, a ``$``, a glob, a here-document, a compound command — is not plain, and mvdan/sh
reads the print instead (:mod:`gatekeeper.shell.mvdan`).

Pure: the printed text in, a :class:`Reading` or None out.
"""

from __future__ import annotations

import re

from gatekeeper.shell.reading import Reading, Record, Redirection, normal_fd, redirection
from gatekeeper.shell.tables import names

_WORD = re.compile(r"[A-Za-z0-9_./:,+@%^=-]+")
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?=)([A-Za-z0-9_./:,+@%^=-]*)")
_REDIRECT = re.compile(r"([0-9]*)(>>|>\||<>|&>>|&>|>|<)")
_DUP = re.compile(r"([0-9]*)(>&|<&)([0-9]+|-)")
_SEPARATORS = frozenset({";", "&", "&&", "||", "|"})
# Words bash reads as reserved in a command's first position: a print holding one there is
# not plain (it would be a compound command, or `time`, `!` …).
_RESERVED = names(
    "if then else elif fi do done case esac while until for in select function time coproc "
    "{ } ! [[ ]]"
)


def simple_reading(printed: str) -> Reading | None:
    """The reading of a plain canonical print; None when it is not plain."""
    records: list[Record] = []
    for line in printed.split("\n"):
        tokens: list[str] = []
        for raw in re.split(r"[ \t]+", line.strip(" \t")):
            if not raw:
                continue
            if raw.endswith(";") and len(raw) > 1:
                tokens.extend((raw[:-1], ";"))
            else:
                tokens.append(raw)
        if tokens and tokens[-1] in _SEPARATORS - {";", "&"}:
            return None  # a line bash ends with `|` or `&&` is not one it prints for plain text
        if tokens and not _read_line(tokens, records):
            return None
    return Reading(tuple(records))


def _read_line(tokens: list[str], records: list[Record]) -> bool:
    """Append the records of one printed line; False when it is not plain."""
    i = 0
    while i < len(tokens):
        assigns: list[str] = []
        words: list[str] = []
        redirects: list[Redirection] = []
        if tokens[i] == "!" and not words:
            i += 1  # `! cmd`: negation, bash's own print
        while i < len(tokens) and tokens[i] not in _SEPARATORS:
            t = tokens[i]
            dup = _DUP.fullmatch(t)
            redirect = _REDIRECT.fullmatch(t)
            if dup:
                op = dup.group(2)
                redirects.append(redirection(dup.group(1), op, dup.group(3)))
            elif redirect:
                if i + 1 >= len(tokens) or not _WORD.fullmatch(tokens[i + 1]):
                    return False
                op = redirect.group(2)
                redirects.append(Redirection(normal_fd(redirect.group(1), op), op, tokens[i + 1]))
                i += 1
            elif not _WORD.fullmatch(t):
                return False
            elif not words and (m := _ASSIGN.fullmatch(t)):
                assigns.append(f"{m.group(1)}{m.group(2)}{m.group(3)}")
            else:
                if not words and t in _RESERVED:
                    return False
                words.append(t)
            i += 1
        if not (assigns or words or redirects):
            return False  # two separators in a row: not a print of a plain line
        records.append(Record(tuple(assigns), tuple(words), tuple(redirects)))
        if i < len(tokens):
            i += 1  # the separator
            if i == len(tokens) and tokens[-1] in (";", "&"):
                break
    return True
