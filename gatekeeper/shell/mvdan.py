"""The second reader: mvdan/sh's syntax tree (``shfmt --to-json``) turned into a :class:`Reading`.

mvdan/sh is the parser behind shfmt, written in Go: a parser family with no code in common with
tree-sitter-bash. gatekeeper feeds it bash's own canonical print of a line (``bash
--pretty-print``), so that the tree describes the line as bash read it, spelled the way bash
spells it (docs/security.md §6).

Quote removal is written again here on purpose, in a few lines, rather than imported from
:mod:`gatekeeper.shell.words`: a shared bug would make both readings agree on the same wrong
value. Pure: a decoded JSON value and the source bytes in, a :class:`Reading` out.
"""

from __future__ import annotations

import re
from typing import Any

from gatekeeper.shell.reading import (
    COMPOUND,
    EXPANSION,
    UNKNOWN,
    Reading,
    Record,
    Redirection,
    heredoc_data,
    normal_fd,
    redirection,
)

Json = dict[str, Any]


def reading_of(tree: Json, source: bytes) -> Reading:
    """The reading of ``source`` from its mvdan/sh syntax tree (a ``File`` node)."""
    reader = _Reader(source)
    reader.stmts(tree.get("Stmts"))
    return Reading(tuple(reader.records))


class _Reader:
    def __init__(self, source: bytes) -> None:
        self.source = source
        self.records: list[Record] = []
        # `time` and `coproc` are keywords to bash and mvdan, but tree-sitter reads them as
        # the name of a simple command: the next simple command found gets them as words.
        self.prefix: list[str] = []

    # -- statements ---------------------------------------------------------------------------

    def stmts(self, stmts: list[Json] | None) -> None:
        for s in stmts or ():
            self.stmt(s)

    def stmt(self, s: Json | None) -> None:
        if not s:
            return
        redirs = tuple(self.redirect(r) for r in s.get("Redirs") or ())
        cmd = s.get("Cmd")
        if cmd is None:
            self.records.append(Record((), self._take_prefix(), redirs))
            return
        t = cmd.get("Type")
        if t == "CallExpr":
            assigns = tuple(self.assign(a) for a in cmd.get("Assigns") or ())
            words = tuple(self.word(w) for w in cmd.get("Args") or ())
            if words:
                words = (*self._take_prefix(), *words)
            self.records.append(Record(assigns, words, redirs))
            return
        if t == "DeclClause":
            variant = str((cmd.get("Variant") or {}).get("Value", ""))
            args = tuple(self.decl_arg(a) for a in cmd.get("Args") or ())
            self.records.append(Record((), (*self._take_prefix(), variant, *args), redirs))
            return
        if t == "FuncDecl":
            name = str((cmd.get("Name") or {}).get("Value", ""))
            body = cmd.get("Body") or {}
            body_redirs = tuple(self.redirect(r) for r in body.get("Redirs") or ())
            self.records.append(Record((), (UNKNOWN + "function", name), redirs + body_redirs))
            self.command(body.get("Cmd"))
            return
        if t == "TimeClause":
            self.prefix.append("time")
            if cmd.get("PosixFormat"):
                self.prefix.append("-p")
            inner = cmd.get("Stmt")
            if redirs:
                self.records.append(Record((), (COMPOUND,), redirs))
            if inner is None:
                self.records.append(Record((), self._take_prefix()))
            else:
                self.stmt(inner)
            return
        if t == "CoprocClause":
            self.prefix.append("coproc")
            name = cmd.get("Name")
            if name is not None:
                self.prefix.append(self.word(name))
            if redirs:
                self.records.append(Record((), (COMPOUND,), redirs))
            self.stmt(cmd.get("Stmt"))
            return
        if t == "TestClause":
            self.records.append(Record((), ("[[",), redirs))
            self.walk(cmd.get("X"))
            return
        if t == "ArithmCmd":
            self.records.append(Record((), ("((",), redirs))
            self.walk(cmd.get("X"))
            return
        if t == "LetClause":
            self.records.append(Record((), (UNKNOWN + "let",), redirs))
            self.walk(cmd.get("Exprs"))
            return
        if redirs:
            self.records.append(Record((), (COMPOUND,), redirs))
        self.command(cmd)

    def command(self, cmd: Json | None) -> None:
        """A compound command (or a simple one reached as a function body)."""
        if not cmd:
            return
        t = cmd.get("Type")
        if t in ("Block", "Subshell"):
            self.stmts(cmd.get("Stmts"))
        elif t == "BinaryCmd":
            self.stmt(cmd.get("X"))
            self.stmt(cmd.get("Y"))
        elif t == "IfClause":
            while cmd:
                self.stmts(cmd.get("Cond"))
                self.stmts(cmd.get("Then"))
                cmd = cmd.get("Else")
        elif t == "WhileClause":
            self.stmts(cmd.get("Cond"))
            self.stmts(cmd.get("Do"))
        elif t == "ForClause":
            self.walk(cmd.get("Loop"))
            self.stmts(cmd.get("Do"))
        elif t == "CaseClause":
            self.walk(cmd.get("Word"))
            for item in cmd.get("Items") or ():
                self.walk(item.get("Patterns"))
                self.stmts(item.get("Stmts"))
        else:
            self.stmt({"Cmd": cmd})

    def _take_prefix(self) -> tuple[str, ...]:
        prefix, self.prefix = tuple(self.prefix), []
        return prefix

    # -- words --------------------------------------------------------------------------------

    def walk(self, node: Any) -> None:
        """Find the commands of every substitution below ``node`` (any node type)."""
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, list):
                stack.extend(reversed(n))
            elif isinstance(n, dict):
                if n.get("Type") in ("CmdSubst", "ProcSubst"):
                    self.stmts(n.get("Stmts"))
                    continue
                stack.extend(reversed([v for v in n.values() if isinstance(v, (dict, list))]))

    def word(self, w: Json | None) -> str:
        """A word's signature; the commands of its substitutions are read on the way."""
        if not w:
            return ""
        return "".join(self.part(p, quoted=False) for p in w.get("Parts") or ())

    def part(self, p: Json, *, quoted: bool) -> str:
        t = p.get("Type")
        if t == "Lit":
            value = str(p.get("Value", ""))
            return _unquote_double(value) if quoted else _unquote(value)
        if t == "SglQuoted":
            value = str(p.get("Value", ""))
            if p.get("Dollar") is True:
                decoded = _ansi_c(value)
                return UNKNOWN + "ansi" if decoded is None else decoded
            return value
        if t == "DblQuoted":
            return "".join(self.part(q, quoted=True) for q in p.get("Parts") or ())
        if t in ("ParamExp", "CmdSubst", "ArithmExp", "ProcSubst"):
            self.walk(p)
            return EXPANSION
        self.walk(p)
        return UNKNOWN + str(t)

    def assign(self, a: Json) -> str:
        name = (a.get("Name") or {}).get("Value")
        if name is None or a.get("Index") is not None:
            self.walk(a)
            return UNKNOWN + "subscript"
        op = "+=" if a.get("Append") else "="
        array = a.get("Array")
        if array is not None:
            elems = [self.word(e.get("Value")) for e in array.get("Elems") or ()]
            return f"{name}{op}(" + " ".join(elems) + ")"
        return f"{name}{op}{self.word(a.get('Value'))}"

    def decl_arg(self, a: Json) -> str:
        if a.get("Naked"):
            if a.get("Name") is not None and a.get("Value") is None:
                return str(a["Name"].get("Value", ""))
            return self.word(a.get("Value"))
        return self.assign(a)

    def redirect(self, r: Json) -> Redirection:
        op = str(r.get("Op", ""))
        fd = str((r.get("N") or {}).get("Value", ""))
        if op in ("<<", "<<-"):
            delim = r.get("Word") or {}
            quoted = any(p.get("Type") != "Lit" or "\\" in str(p.get("Value", ""))
                         for p in delim.get("Parts") or ())  # fmt: skip
            hdoc = r.get("Hdoc")
            body = ""
            if hdoc:
                self.walk(hdoc)
                body = self._body(hdoc, self.word(delim), strip_tabs=op == "<<-")
            data = heredoc_data(body, strip_tabs=op == "<<-", quoted=quoted)
            return Redirection(normal_fd(fd, op), op + ("q" if quoted else ""), data)
        return redirection(fd, op, self.word(r.get("Word")))

    def _body(self, hdoc: Json, delimiter: str, *, strip_tabs: bool) -> str:
        # From the start of the body's first line to its end; mvdan's end offset sometimes
        # takes in the delimiter line (or the tabs before it): that line is not data.
        start = int(hdoc["Pos"]["Offset"])
        end = int(hdoc["End"]["Offset"])
        start = self.source.rfind(b"\n", 0, start) + 1
        lines = self.source[start:end].decode("utf-8", "surrogateescape").split("\n")
        last = lines[-1].lstrip("\t") if strip_tabs else lines[-1]
        if last in (delimiter, "") or not last.strip("\t"):
            lines.pop()
        return "\n".join(lines)


def _unquote(raw: str) -> str:
    """Unquoted text: a backslash quotes the next character; backslash-newline is removed."""
    out: list[str] = []
    escaped = False
    for ch in raw:
        if escaped:
            if ch != "\n":
                out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


def _unquote_double(raw: str) -> str:
    """Inside double quotes a backslash quotes only ``$``, backtick, ``"``, ``\\``, newline."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        if ch == "\\" and nxt and nxt in '$`"\\\n':
            if nxt != "\n":
                out.append(nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_SIMPLE_ESCAPES = dict(zip("abeEfnrtv\\'\"?", "\a\b\x1b\x1b\f\n\r\t\v\\'\"?", strict=True))
_ANSI_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{1,4})|U([0-9A-Fa-f]{1,8})"
    r"|c(\\\\|[\x00-\x7f])|(.))",
    re.S,
)


def _ansi_c(body: str) -> str | None:
    """The value of ``$'…'``: this reader's own decoder (see the module doc), None if unsure."""
    out: list[str] = []
    pos = 0
    for m in _ANSI_ESCAPE.finditer(body):
        out.append(body[pos : m.start()])
        pos = m.end()
        octal, hex2, hex4, hex8, ctrl, other = m.groups()
        if octal is not None:
            out.append(chr(int(octal, 8) & 0xFF))
        elif hex2 or hex4 or hex8:
            code = int(hex2 or hex4 or hex8, 16)
            if code > 0x10FFFF:
                return None
            out.append(chr(code))
        elif ctrl is not None:
            char = ctrl[0]
            out.append("\x7f" if char == "?" else chr(ord(char.upper()) & 0x1F))
        elif other in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[other])
        elif other in "xuUc":
            if other == "c":
                return None  # \c at the end, or before a character bash reads bytewise
            out.append("\\" + other)
        else:
            out.append("\\" + other)
    out.append(body[pos:])
    text = "".join(out)
    return text.split("\x00", 1)[0]  # bash ends the string at its first NUL
