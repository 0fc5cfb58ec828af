"""A *reading*: what one parser says a piece of shell text runs, in a form two parsers share.

gatekeeper allows a line only when independent parsers read it the same way (docs/security.md
§6). Each reader — the tree-sitter walk (:mod:`gatekeeper.shell.walker`) and mvdan/sh's syntax
tree of bash's own canonical print (:mod:`gatekeeper.shell.mvdan`) — turns a text into a
:class:`Reading`: the simple commands it holds (their assignments and words after quote
removal, in order), every redirection with its target, and the data of every here-document.
Two readings are compared as multisets: the order in which two tree walks meet the commands of
``a $(b)`` is an accident of the walk, not of the line.

A word's *signature* is its value after quote removal, with every expansion or substitution
replaced by :data:`EXPANSION` (its commands are commands of the reading in their own right).
NUL cannot occur in a command (:func:`gatekeeper.shell.words.check_input`), so the marker never
collides with text. Constructs a reader does not model become :data:`UNKNOWN` + a name, which
only ever equals the same construct seen by the other reader.

Pure: values in, values out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

EXPANSION = "\x00"
UNKNOWN = "\x01"
COMPOUND = UNKNOWN + "compound"  # the words of a record for a redirected compound command


@dataclass(frozen=True, slots=True)
class Redirection:
    """One redirection: descriptor (``""`` for the operator's default), operator, target.

    For here-documents the operator carries ``q`` when the delimiter was quoted, and the target
    is the body as data (tabs stripped for ``<<-``; backslash-newlines joined when unquoted).
    """

    fd: str
    op: str
    target: str


@dataclass(frozen=True, slots=True)
class Record:
    """One simple command (or a declaration, an assignment, a redirected compound command)."""

    assigns: tuple[str, ...]
    words: tuple[str, ...]
    redirects: tuple[Redirection, ...] = ()

    def key(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Redirection, ...]]:
        # Redirections of one command are compared as a set: tree-sitter hangs some of them
        # on an enclosing list (gatekeeper gives them back to the last command, as bash does),
        # which changes their order but not what they are.
        return self.assigns, self.words, tuple(sorted(self.redirects, key=_redirect_key))

    def show(self) -> str:
        """A short human-readable form for notes and test failures."""
        words = [*self.assigns, *self.words]
        text = " ".join(w.replace(EXPANSION, "$…").replace(UNKNOWN, "?") for w in words)
        for r in self.redirects:
            target = r.target if len(r.target) <= 40 else r.target[:39] + "…"
            text += f" {r.fd}{r.op} {target!r}"
        return text.replace("\n", "\\n")[:160]


def _redirect_key(r: Redirection) -> tuple[str, str, str]:
    return r.fd, r.op, r.target


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one reader found in one text."""

    records: tuple[Record, ...]

    def counts(self) -> Counter[tuple[object, ...]]:
        return Counter(r.key() for r in self.records)


def difference(ours: Reading, theirs: Reading) -> str | None:
    """None when two readings agree; else a short description of the first difference."""
    a, b = ours.counts(), theirs.counts()
    if a == b:
        return None
    only_ours = _first(ours.records, a - b)
    only_theirs = _first(theirs.records, b - a)
    if only_ours is not None and only_theirs is not None:
        return f"gatekeeper read `{only_ours.show()}` where bash reads `{only_theirs.show()}`"
    if only_theirs is not None:
        return f"bash also reads `{only_theirs.show()}`"
    if only_ours is not None:
        return f"bash does not read `{only_ours.show()}`"
    return "the readings differ"  # pragma: no cover - Counter inequality implies one side


def _first(records: Iterable[Record], extra: Counter[tuple[object, ...]]) -> Record | None:
    for r in records:
        if extra.get(r.key()):
            return r
    return None


_OUTPUT_OPS = frozenset({">", ">>", ">|", ">&"})
_INPUT_OPS = frozenset({"<", "<&", "<>", "<<", "<<-", "<<<"})


def redirection(fd: str, op: str, target: str) -> Redirection:
    """A redirection as every reader records it: the default descriptor spelled out, and a
    closed descriptor one way (bash prints ``<&-`` as ``>&-``)."""
    fd = normal_fd(fd, op)
    if target == "-" and op in ("<&", ">&"):
        op = ">&"
    return Redirection(fd, op, target)


def normal_fd(fd: str, op: str) -> str:
    """The descriptor a redirection acts on, its default spelled out (bash prints ``1>&2``)."""
    if fd:
        return fd
    if op in _OUTPUT_OPS:
        return "1"
    if op in _INPUT_OPS:
        return "0"
    return ""


def heredoc_data(body: str, *, strip_tabs: bool, quoted: bool) -> str:
    """A here-document body as the data bash gives the command (before expansions).

    ``<<-`` strips leading tabs from every line; an unquoted delimiter makes bash remove each
    backslash-newline while it reads the body (which is also why such a pair can hide or make
    the delimiter line). Trailing newlines are dropped: readers differ in whether the last one
    belongs to the body, and it changes nothing a policy decides.
    """
    if not quoted:
        out: list[str] = []
        i, n = 0, len(body)
        while i < n:
            ch = body[i]
            if ch == "\\" and i + 1 < n:
                if body[i + 1] != "\n":
                    out.append(body[i : i + 2])
                i += 2
                continue
            out.append(ch)
            i += 1
        body = "".join(out)
    if strip_tabs:
        body = "\n".join(line.lstrip("\t") for line in body.split("\n"))
    return body.rstrip("\n")
