"""From a bash command line to the simple commands, file writes and directories it really uses.

This module is pure: text in, :class:`Part` values out. It parses with tree-sitter-bash and walks
the tree the way bash would run it (architecture.md §3):

* every simple command of ``;``, ``&&``, ``||``, ``&``, ``|``, newlines, subshells, groups,
  ``$(…)``, backticks, ``<(…)``/``>(…)``, ``if``/``for``/``while``/``case`` bodies and functions;
* wrappers (``sudo``, ``env``, ``xargs``, ``find -exec``, ``bash -c``, ``eval`` …) are unwrapped
  and the inner command is a part of its own; shell strings are re-parsed;
* output redirections and ``tee`` targets are ``write`` parts; path arguments of file commands and
  ``cd`` targets outside the project root are ``external_directory`` parts;
* anything it cannot read with confidence carries a ``floor`` of ``ask``: the engine never
  allows it, whatever the rules say.

The walk tracks the set of directories a later part may run in: ``cd a; x`` runs ``x`` in ``a``
or, if ``cd`` failed, where it started — both are checked.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from gatekeeper.errors import BadInput

Floor = Literal["allow", "ask", "deny"]

MAX_COMMAND_BYTES = 64 * 1024  # longer lines are never parsed: ask
MAX_DEPTH = 24  # nesting of substitutions, re-parsed strings and wrappers
MAX_NODES = 20_000  # tree nodes visited per line
MAX_PARTS = 512
MAX_NESTING = 100  # statements inside statements (keeps the walk far from Python's stack limit)
MAX_CWDS = 8

_LANGUAGE = Language(tree_sitter_bash.language())
_FUNSUB = re.compile(r"\$\{[ \t\n|]")  # bash 5.3 ${ cmd; } and ${| cmd; }
_UNPARSABLE = re.compile("[\U00040000-\U0010ffff]")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Leading VAR=value assignments that cannot change what a command does in a harmful way.
HARMLESS_VARS = _names(
    "CI NODE_ENV RUST_LOG RUST_BACKTRACE DEBUG FORCE_COLOR NO_COLOR CLICOLOR "
    "CLICOLOR_FORCE COLUMNS LINES TERM LANG LANGUAGE LC_ALL LC_CTYPE LC_MESSAGES "
    "LC_COLLATE LC_NUMERIC LC_TIME TZ PYTHONUNBUFFERED PYTHONDONTWRITEBYTECODE "
    "PYTHONHASHSEED VERBOSE CARGO_TERM_COLOR GOOS GOARCH "
    "CGO_ENABLED DOTNET_CLI_TELEMETRY_OPTOUT NEXT_TELEMETRY_DISABLED HUSKY "
    "NPM_CONFIG_LOGLEVEL"
)
# Not matched against bash rules: they only change the directory (as opencode treats them).
DIRECTORY_COMMANDS = frozenset({"cd", "pushd", "popd"})
# Commands whose non-option arguments are paths checked against external_directory.
FILE_COMMANDS = _names(
    "rm rmdir cp mv mkdir touch chmod chown chgrp cat ln truncate shred head tail less "
    "more unlink install tee ls stat file find dd"
)
_FIRST_ARG_NOT_PATH = frozenset({"chmod", "chown", "chgrp"})
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh", "mksh", "ash", "yash", "posh"})
# Places writing to which is not a file write.
NOT_WRITES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
_DEV_FD = re.compile(r"^/dev/fd/[0-9]+$")
_WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})


@dataclass(frozen=True, slots=True)
class Part:
    """One thing a command line does that a policy decides.

    ``permission`` is ``bash`` (a simple command), ``write`` (a file it writes) or
    ``external_directory`` (a directory outside the project root). ``floor`` is the least strict
    decision this part may get whatever the rules say; ``note`` says why it was raised.
    ``variants`` are normalised spellings of the subject (``/usr/bin/git`` → ``git``) that are
    also decided and can only make the decision stricter.
    """

    permission: str
    subject: str
    floor: Floor = "allow"
    note: str | None = None
    variants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything the engine needs from one command line."""

    command: str
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Word:
    """One shell word: its value with quoting removed, or its source text where not static."""

    text: str
    static: bool  # no expansion or substitution in it
    pattern: bool = False  # unquoted glob, brace or tilde characters: bash may rewrite it
    node: Node | None = field(default=None, compare=False)


def check_input(command: str | bytes) -> str:
    """Reject what is not a command at all: invalid UTF-8 and NUL bytes (``BadInput``)."""
    if isinstance(command, bytes):
        try:
            command = command.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"command is not valid UTF-8 (byte {exc.start})") from None
    if "\x00" in command:
        raise BadInput("command contains a NUL byte")
    if not command.isascii():
        try:
            command.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("command contains a lone surrogate: not valid UTF-8") from None
    return command


def invisible_characters(text: str) -> list[str]:
    """Unicode format characters (bidi controls, zero-width …) and control characters in text.

    Tab and newline are ordinary shell syntax and not reported.
    """
    found: list[str] = []
    for ch in text:
        o = ord(ch)
        if ch in "\t\n":
            continue
        if (o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0) or (
            o > 0x7F and unicodedata.category(ch) in ("Cf", "Zl", "Zp", "Co", "Cn")
        ):
            found.append(f"U+{o:04X}")
    return found


def is_plain_command_word(text: str) -> bool:
    """A command word gatekeeper trusts: non-empty printable ASCII without spaces."""
    return bool(text) and all(0x21 <= ord(c) <= 0x7E for c in text)


# --------------------------------------------------------------------------------------------
# Word values


_ANSI_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def decode_ansi_c(body: str) -> str | None:
    """Decode the inside of ``$'…'`` as bash does; None where unsure."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ANSI_SIMPLE:
            out.append(_ANSI_SIMPLE[nxt])
            i += 2
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
            if digits is None:  # pragma: no cover - nxt is an octal digit
                return None
            out.append(chr(int(digits.group(0), 8) & 0xFF))
            i += 1 + len(digits.group(0))
        elif nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            m = re.match(rf"[0-9A-Fa-f]{{1,{width}}}", body[i + 2 :])
            if m is None:
                out.append("\\" + nxt)
                i += 2
                continue
            code = int(m.group(0), 16)
            if code > 0x10FFFF:
                return None
            out.append(chr(code))
            i += 2 + len(m.group(0))
        elif nxt == "c":
            if i + 2 >= n:
                return None
            ch = body[i + 2]
            # bash's TOCTRL: \c? is DEL, anything else is its upper case ANDed with 0x1f.
            out.append("\x7f" if ch == "?" else chr(ord(ch.upper()[0]) & 0x1F))
            i += 3
        else:
            out.append("\\" + nxt)
            i += 2
    decoded = "".join(out)
    # bash ends a $'…' string at its first NUL: $'rm\c@xyz' is "rm".
    nul = decoded.find("\x00")
    return decoded if nul < 0 else decoded[:nul]


_DQ_ESCAPES = frozenset('$`"\\\n')
_PATTERN_CHARS = frozenset("*?[]{}~")


def _unescape_unquoted(raw: str) -> tuple[str, bool]:
    out: list[str] = []
    pattern = False
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n:
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
            continue
        if ch in _PATTERN_CHARS:
            pattern = True
        out.append(ch)
        i += 1
    return "".join(out), pattern


def _unescape_double(raw: str) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] in _DQ_ESCAPES:
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _text(node: Node) -> str:
    data = node.text
    return data.decode("utf-8", "surrogateescape") if data is not None else ""


def word_of(node: Node) -> Word:
    """The :class:`Word` value of one argument-like node."""
    t = node.type
    if t == "word":
        value, pattern = _unescape_unquoted(_text(node))
        return Word(value, True, pattern, node)
    if t == "number":
        return Word(_text(node), True, False, node)
    if t == "raw_string":
        return Word(_text(node)[1:-1], True, False, node)
    if t == "ansi_c_string":
        decoded = decode_ansi_c(_text(node)[2:-1])
        if decoded is None:
            return Word(_text(node), False, False, node)
        return Word(decoded, True, False, node)
    if t in ("string", "translated_string"):
        # Work from the source bytes: tree-sitter folds blanks into its quote and `$` tokens
        # (`" "` has no string_content), so the children alone lose characters.
        data = node.text or b""
        base = node.start_byte
        lo = data.index(b'"') + 1 if b'"' in data else 0
        hi = len(data) - 1 if len(data) > lo and data.endswith(b'"') else len(data)
        pieces: list[str] = []
        static = True
        pos = lo
        for c in node.named_children:
            if c.type == "string_content":
                continue
            a, b = c.start_byte - base, c.end_byte - base
            if a < pos or b > hi:
                continue
            pieces.append(_unescape_double(data[pos:a].decode("utf-8", "surrogateescape")))
            pieces.append(_text(c))
            static = False
            pos = b
        pieces.append(_unescape_double(data[pos:hi].decode("utf-8", "surrogateescape")))
        return Word("".join(pieces), static, False, node)
    if t == "concatenation":
        parts = [word_of(c) for c in node.children]
        return Word(
            "".join(p.text for p in parts),
            all(p.static for p in parts),
            any(p.pattern for p in parts),
            node,
        )
    return Word(_text(node), False, True, node)


# --------------------------------------------------------------------------------------------
# The walk


Cwds = frozenset[str] | None  # the directories a part may run in; None: unknown


@dataclass(slots=True)
class _Budget:
    nodes: int = 0
    exhausted: bool = False


class _Walker:
    def __init__(self, root: str, home: str | None) -> None:
        self.root = posixpath.normpath(root) if root else "/"
        self.home = home
        self.parts: list[Part] = []
        self.budget = _Budget()
        self.level = 0  # statements being walked, one inside the other
        self.too_deep = False

    # -- emitting ---------------------------------------------------------------------------

    def emit(self, part: Part) -> None:
        if len(self.parts) < MAX_PARTS:
            self.parts.append(part)
        elif not self.budget.exhausted:
            self.budget.exhausted = True
            self.parts.append(Part("bash", "", "ask", f"more than {MAX_PARTS} parts: too complex"))

    def unsure(self, subject: str, note: str) -> None:
        self.emit(Part("bash", subject, "ask", note))

    # -- entry points -----------------------------------------------------------------------

    def source(self, text: str, cwds: Cwds, depth: int) -> Cwds:
        """Parse and walk one piece of shell source; returns the directories after it."""
        if depth > MAX_DEPTH:
            self.unsure(text[:200], "nested too deeply to check")
            return None
        if len(text.encode("utf-8", "surrogateescape")) > MAX_COMMAND_BYTES:
            self.unsure(text[:200], f"longer than {MAX_COMMAND_BYTES} bytes: not checked")
            return None
        if _UNPARSABLE.search(text):
            # tree-sitter-bash 0.25 reads out of bounds (and may crash the process) on code
            # points from plane 4 up after `{`, `$` …; no assigned character lives there but
            # tag characters and private use. Never parsed: ask.
            self.unsure(text[:200], "characters beyond U+3FFFF: not parsed")
            return None
        data = text.encode("utf-8", "surrogateescape")
        tree = Parser(_LANGUAGE).parse(data)
        for _ in range(4):
            # bash removes a backslash-newline outside quotes before it splits words
            # (`r\<newline>m` is `rm`); tree-sitter takes it for a blank. Remove, parse again.
            joined = _join_continuations(data, tree.root_node)
            if joined is None:
                break
            data = joined
            text = data.decode("utf-8", "surrogateescape")
            tree = Parser(_LANGUAGE).parse(data)
        root = tree.root_node
        if root.has_error:
            self.unsure(text, "bash syntax gatekeeper cannot parse with confidence")
            self.funsubs(text, cwds, depth)
        before = len(self.parts)
        _ok, after = self.stmt(root, cwds, depth)
        new = self.parts[before:]
        if (
            not root.has_error
            and not any(p.permission == "bash" for p in new)
            and not any(p.floor != "allow" for p in new)
        ):
            # Nothing that runs: still never an allow by vacuous truth.
            self.emit(Part("bash", text.strip(), "ask", "no command to check"))
        return after

    def funsubs(self, text: str, cwds: Cwds, depth: int) -> None:
        """Walk bash 5.3's ``${ cmd; }`` and ``${| cmd; }``: they run cmd, tree-sitter fails.

        The body ends at the first ``}`` after which it parses cleanly (else at the last ``}``).
        Only ever adds parts to a line that already asks.
        """
        for m in _FUNSUB.finditer(text):
            start = m.end()
            ends = [i for i in range(start, len(text)) if text[i] == "}"]
            if not ends:
                continue
            body = text[start : ends[-1]]
            for e in ends:
                candidate = text[start:e]
                if (
                    candidate.strip()
                    and not Parser(_LANGUAGE)
                    .parse(candidate.encode("utf-8", "surrogateescape"))
                    .root_node.has_error
                ):
                    body = candidate
                    break
            if body.strip():
                self.source(body, cwds, depth + 1)

    # -- statements ---------------------------------------------------------------------------

    def stmt(self, node: Node, cwds: Cwds, depth: int) -> tuple[Cwds, Cwds]:
        """Walk a statement; return (directories if it succeeded, directories whatever happened)."""
        if self.level >= MAX_NESTING:
            if not self.too_deep:
                self.too_deep = True
                self.unsure(_text(node)[:200], "nested too deeply to check")
            return None, None
        self.level += 1
        try:
            return self._stmt(node, cwds, depth)
        finally:
            self.level -= 1

    def _stmt(self, node: Node, cwds: Cwds, depth: int) -> tuple[Cwds, Cwds]:
        self.budget.nodes += 1
        if self.budget.nodes > MAX_NODES:
            if not self.budget.exhausted:
                self.budget.exhausted = True
                self.unsure("", "command line too large to check")
            return None, None
        if depth > MAX_DEPTH:
            self.unsure(_text(node)[:200], "nested too deeply to check")
            return None, None
        t = node.type
        if t in ("program", "compound_statement", "do_group"):
            return self.sequence(node.children, cwds, depth)
        if t == "list":
            return self.list_(node, cwds, depth)
        if t == "pipeline":
            for c in node.named_children:
                self.stmt(c, cwds, depth)
            return cwds, cwds
        if t == "subshell":
            self.sequence(node.children, cwds, depth)
            return cwds, cwds
        if t == "negated_command":
            _ok, every = self.sequence(node.named_children, cwds, depth)
            return every, every
        if t == "redirected_statement":
            return self.redirected(node, cwds, depth)
        if t == "command":
            return self.command(node, [], cwds, depth)
        if t in (
            "if_statement",
            "elif_clause",
            "else_clause",
            "while_statement",
            "for_statement",
            "c_style_for_statement",
            "case_statement",
            "case_item",
        ):
            return self.compound(node, cwds, depth)
        if t == "function_definition":
            for c in node.named_children:
                if c.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                    # applied on every call of the function: decided as if it ran now
                    self.redirect(c, cwds, depth)
            body = node.child_by_field_name("body")
            if body is not None:
                _, after = self.stmt(body, cwds, depth + 1)
                if after != cwds:
                    # A function that changes directory makes every later directory unknown.
                    return None, None
            return cwds, cwds
        if t in ("variable_assignment", "variable_assignments"):
            assigns = [node] if t == "variable_assignment" else list(node.named_children)
            for a in assigns:
                self.assignment(a, cwds, depth, standalone=True)
            return cwds, cwds
        if t in ("declaration_command", "unset_command"):
            words = [self.expand(c, cwds, depth) for c in node.children if c.is_named]
            keyword = _text(node.children[0]) if node.children else t
            floor: Floor = "allow"
            note: str | None = None
            for c in node.named_children:
                if c.type == "variable_assignment":
                    name = self.assignment(c, cwds, depth, standalone=False)
                    if name not in HARMLESS_VARS and keyword != "local":
                        # `export PATH=…` changes what every later command is.
                        floor, note = "ask", f"sets {name or 'an array element'}"
            arith = arithmetic_evaluation(keyword, words)
            if arith is not None:
                floor, note = "ask", arith
            subject = " ".join([keyword, *(w.text for w in words)])
            self.emit(Part("bash", subject, floor, note))
            return cwds, cwds
        if t == "test_command":
            self.scan(node, cwds, depth, test_context=True)
            return cwds, cwds
        if t == "comment":
            return cwds, cwds
        if t in ("heredoc_body", "heredoc_start", "heredoc_end"):
            return cwds, cwds
        if t == "ERROR":
            self.scan(node, cwds, depth)
            return None, None
        # A construct this walker does not know: look inside, never allow.
        self.unsure(_text(node)[:200], f"unfamiliar shell construct ({t})")
        self.scan(node, cwds, depth)
        return None, None

    def sequence(self, nodes: Iterable[Node], cwds: Cwds, depth: int) -> tuple[Cwds, Cwds]:
        items = [c for c in nodes if c.is_named or c.type == "&"]
        ok = every = cwds
        for i, c in enumerate(items):
            if c.type == "&":
                continue
            background = i + 1 < len(items) and items[i + 1].type == "&"
            if background:
                # `cmd &` runs in a subshell: a cd inside it changes nothing here.
                self.stmt(c, every, depth)
                ok = every
            else:
                ok, every = self.stmt(c, every, depth)
        return ok, every

    def list_(
        self,
        node: Node,
        cwds: Cwds,
        depth: int,
        tail: tuple[list[Node], list[Node]] | None = None,
    ) -> tuple[Cwds, Cwds]:
        chain: list[tuple[str, Node]] = []  # (operator, right side), iteratively: no recursion
        cur = node
        while cur.type == "list" and len(cur.children) == 3:
            chain.append((cur.children[1].type, cur.children[2]))
            cur = cur.children[0]
        if not chain:
            return self.sequence(node.children, cwds, depth)
        chain.reverse()
        ok, every = self.stmt(cur, cwds, depth)
        for k, (op, right) in enumerate(chain):
            start = ok if op == "&&" else every
            if tail is not None and k == len(chain) - 1:
                ok_r, all_r = self.with_redirects(right, tail[0], tail[1], start, depth)
            else:
                ok_r, all_r = self.stmt(right, start, depth)
            if op == "&&":
                ok, every = ok_r, _union(every, all_r)
            elif op == "||":
                ok, every = _union(ok, ok_r), _union(every, all_r)
            else:
                ok, every = ok_r, all_r
        return ok, every

    def compound(self, node: Node, cwds: Cwds, depth: int) -> tuple[Cwds, Cwds]:
        # Bodies of if/while/for/case may run or not, once or many times: every directory
        # they may change to is possible afterwards.
        every = cwds
        if node.type == "c_style_for_statement" and not _counting_loop(node):
            self.unsure(_text(node)[:200], "arithmetic on values that may hold code")
        for c in node.named_children:
            if c.type in ("variable_assignment", "variable_assignments") and (
                node.type != "c_style_for_statement"
            ):
                # `if PATH=/x; then …` or `while …; do PATH=/x; done`: a standalone assignment
                _, after = self.stmt(c, every, depth)
                every = _union(every, after)
            elif c.type in _STATEMENTS:
                _, after = self.stmt(c, every, depth)
                every = _union(every, after)
            else:
                self.scan(c, every, depth)
        return every, every

    def redirected(self, node: Node, cwds: Cwds, depth: int) -> tuple[Cwds, Cwds]:
        body: Node | None = None
        redirects: list[Node] = []
        for i, c in enumerate(node.children):
            if node.field_name_for_child(i) == "body" and body is None:
                body = c
            elif c.is_named:
                redirects.append(c)
        extra_words: list[Node] = []
        continuations: list[Node] = []
        for r in redirects:
            extra_words.extend(self.redirect_extra_words(r))
            continuations.extend(self.redirect_continuations(r))
        if body is None:
            for r in redirects:
                self.redirect(r, cwds, depth)
            ok, every = cwds, cwds
        else:
            ok, every = self.with_redirects(body, redirects, extra_words, cwds, depth)
        return self.continue_after(continuations, ok, every, depth)

    def with_redirects(
        self,
        body: Node,
        redirects: list[Node],
        extra_words: list[Node],
        cwds: Cwds,
        depth: int,
    ) -> tuple[Cwds, Cwds]:
        """Walk ``body`` with redirections that tree-sitter hung on it.

        tree-sitter reads ``cd d && echo > f`` as ``(cd d && echo) > f``; bash gives the
        redirection to the last command only, which runs in ``d``: follow bash.
        """
        if body.type == "command":
            return self.command(body, redirects, cwds, depth, extra_words)
        if body.type == "list" and len(body.children) == 3:
            return self.list_(body, cwds, depth, (redirects, extra_words))
        if body.type == "pipeline" and body.named_children:
            kids = body.named_children
            for c in kids[:-1]:
                self.stmt(c, cwds, depth)
            self.with_redirects(kids[-1], redirects, extra_words, cwds, depth)
            return cwds, cwds
        ok, every = self.stmt(body, cwds, depth)
        for r in redirects:
            self.redirect(r, cwds, depth)
        if extra_words:
            self.unsure(_text(body)[:200], "words after a redirection of a compound command")
        return ok, every

    def continue_after(
        self, nodes: list[Node], ok: Cwds, every: Cwds, depth: int
    ) -> tuple[Cwds, Cwds]:
        # tree-sitter places "&& more" or "| more" that follow a here-document inside the
        # heredoc_redirect node; walk them as what they are, the rest of the list.
        op = ""
        for c in nodes:
            if not c.is_named:
                op = c.type
                continue
            if op == "&&":
                ok, after = self.stmt(c, ok, depth)
                every = _union(every, after)
            elif op == "||":
                _, after = self.stmt(c, every, depth)
                every = _union(every, after)
                ok = every
            elif op in ("|", "|&"):
                self.stmt(c, every, depth)
            else:
                ok, every = self.stmt(c, every, depth)
        return ok, every

    @staticmethod
    def redirect_extra_words(r: Node) -> list[Node]:
        # `rm >/dev/null -rf /`: tree-sitter files "-rf" and "/" under the redirect; bash
        # passes them to rm as arguments.
        if r.type != "file_redirect":
            return []
        dests = [c for c in r.children if c.is_named and c.type != "file_descriptor"]
        groups = _touching_groups(dests)
        return [n for g in groups[1:] for n in g]

    @staticmethod
    def redirect_continuations(r: Node) -> list[Node]:
        if r.type != "heredoc_redirect":
            return []
        out: list[Node] = []
        for c in r.children:
            if c.type in ("heredoc_start", "heredoc_body", "heredoc_end", "<<", "<<-"):
                continue
            out.append(c)
        return out

    # -- simple commands --------------------------------------------------------------------

    def command(
        self,
        node: Node,
        outer_redirects: Sequence[Node],
        cwds: Cwds,
        depth: int,
        extra_words: Sequence[Node] = (),
    ) -> tuple[Cwds, Cwds]:
        assigns: list[Node] = []
        name_node: Node | None = None
        args: list[Node] = []
        redirects: list[Node] = list(outer_redirects)
        for i, c in enumerate(node.children):
            field_name = node.field_name_for_child(i)
            if c.type == "variable_assignment" and name_node is None:
                assigns.append(c)
            elif c.type == "command_name":
                name_node = c
            elif c.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                redirects.append(c)
            elif field_name == "argument" or c.is_named:
                args.append(c)
        for c in node.children:
            if c.type == "file_redirect":
                extra_words = [*extra_words, *self.redirect_extra_words(c)]
        args.extend(extra_words)
        floor: Floor = "allow"
        notes: list[str] = []
        for a in assigns:
            name = self.assignment(a, cwds, depth, standalone=False)
            if name not in HARMLESS_VARS:
                floor = "ask"
                notes.append(f"sets {name or 'a variable'} for the command")
        heredoc_script: str | None = None
        heredoc_static = True
        for r in redirects:
            script = self.redirect(r, cwds, depth)
            if script is not None:
                heredoc_script, heredoc_static = script
        if name_node is None:
            # Only assignments and redirections: runs no command.
            if not assigns and not any(r.type == "file_redirect" for r in redirects):
                self.unsure(_text(node), "no command")
            elif floor != "allow":
                self.emit(Part("bash", _text(node), floor, "; ".join(notes)))
            return cwds, cwds
        if _dropped_text(node):
            floor = "ask"
            notes.append("text between words tree-sitter did not read (e.g. a lone `\\ `)")
        name_inner = name_node.named_children[0] if name_node.named_children else name_node
        nodes = [name_inner, *(a for a in args if a.type != "comment")]
        # tree-sitter splits `'r'\m` in two; bash reads touching pieces as one word.
        words = [self.expand_group(g, cwds, depth) for g in _touching_groups(nodes)]
        stdin_script = None if heredoc_script is None else (heredoc_script, heredoc_static)
        return self.simple(words, floor, notes, cwds, depth, stdin_script=stdin_script)

    def simple(
        self,
        words: list[Word],
        floor: Floor,
        notes: list[str],
        cwds: Cwds,
        depth: int,
        *,
        stdin_script: tuple[str, bool] | None = None,
    ) -> tuple[Cwds, Cwds]:
        """Decide one simple command given as words; unwrap wrappers into more parts."""
        if not words:
            return cwds, cwds
        if depth > MAX_DEPTH:
            self.unsure(" ".join(w.text for w in words)[:200], "nested too deeply to check")
            return None, None
        name = words[0]
        subject = " ".join(w.text for w in words)
        if (
            len(words) > 1
            and name.node is not None
            and name.node.type == "word"
            and name.text in _RESERVED_BEFORE_COMMAND
        ):
            # tree-sitter misreads `! { rm; }` as a command named `{`
            # (or `!`); bash runs what follows the reserved word: decide that as well.
            note = f"reserved word `{name.text}` read as a command name"
            self.emit(Part("bash", subject, "ask", note))
            return self.simple(words[1:], "ask", [*notes, note], cwds, depth + 1)
        if not name.static or name.pattern:
            floor = "ask"
            notes.append("the command name is not a fixed word")
        elif not is_plain_command_word(name.text):
            floor = "ask"
            notes.append("the command name is not plain printable ASCII")
        variants = _variants(words)
        cmd = posixpath.basename(name.text) if name.static else ""
        if cmd in DIRECTORY_COMMANDS and name.static and not name.pattern:
            if floor != "allow":
                self.emit(Part("bash", subject, floor, "; ".join(notes)))
            return self.change_directory(cmd, words[1:], cwds)
        arith = arithmetic_evaluation(cmd, words[1:])
        if arith is not None:
            floor = "ask"
            notes.append(arith)
        self.emit(Part("bash", subject, floor, "; ".join(notes) or None, variants))
        if cmd in FILE_COMMANDS:
            self.path_arguments(cmd, words[1:], cwds)
        if cmd == "tee":
            for w in _non_options(words[1:]):
                self.write_target(w, cwds)
        if cmd == "dd":
            for w in words[1:]:
                if w.text.startswith("of="):
                    self.write_target(Word(w.text[3:], w.static, w.pattern, w.node), cwds)
        return self.unwrap(cmd, words, cwds, depth, stdin_script)

    def unwrap(
        self,
        cmd: str,
        words: list[Word],
        cwds: Cwds,
        depth: int,
        stdin_script: tuple[str, bool] | None,
    ) -> tuple[Cwds, Cwds]:
        spec = WRAPPERS.get(cmd)
        args = words[1:]
        if cmd in SHELLS or (cmd == "busybox" and args and args[0].text in SHELLS):
            if cmd == "busybox":
                args = args[1:]
            self.shell_invocation(args, cwds, depth, stdin_script)
            return cwds, cwds
        if cmd == "eval":
            if not all(w.static for w in args):
                self.unsure(" ".join(w.text for w in words), "eval of text that is not fixed")
            if args:
                return self.inline_source(" ".join(w.text for w in args), cwds, depth)
            return cwds, cwds
        if cmd == "trap":
            code = _non_options(args)
            if code and code[0].text not in ("-", "") and len(code) > 1:
                if not code[0].static:
                    self.unsure(" ".join(w.text for w in words), "trap code that is not fixed")
                self.source(code[0].text, cwds, depth + 1)
            return cwds, cwds
        if cmd in ("source", "."):
            # Runs a file we cannot see; it may change directory.
            return None, None
        if cmd == "find":
            self.find_exec(args, cwds, depth)
            return cwds, cwds
        if cmd == "su":
            for i, w in enumerate(args):
                if w.text in ("-c", "--command") and i + 1 < len(args):
                    self.shell_string(args[i + 1], cwds, depth)
                elif w.text.startswith("--command="):
                    self.shell_string(Word(w.text[10:], w.static), cwds, depth)
            return cwds, cwds
        if cmd == "watch":
            inner = WATCH_OPTS.split(args)[0]
            if inner is None:
                self.unsure(" ".join(w.text for w in words), "options of watch not understood")
            elif inner:
                self.inline_source(" ".join(w.text for w in inner), cwds, depth, subshell=True)
            return cwds, cwds
        if spec is None:
            return cwds, cwds
        inner, assigns, dynamic_dir = spec.split(args)
        if inner is None:
            self.unsure(
                " ".join(w.text for w in words),
                f"cannot tell which command {cmd} runs: options not understood",
            )
            return None, None
        floor: Floor = "allow"
        notes: list[str] = []
        for a in assigns:
            var = a.text.split("=", 1)[0]
            if var not in HARMLESS_VARS:
                floor = "ask"
                notes.append(f"sets {var} for the command")
        if cmd == "env" and dynamic_dir:
            floor = "ask"
            notes.append("env changes directory")
        if cmd == "env" and any(
            w.text in ("-S", "--split-string") or w.text.startswith(("-S", "--split-string="))
            for w in args
        ):
            self.unsure(" ".join(w.text for w in words), "env -S splits a string into a command")
        if not inner:
            if cmd == "xargs":
                inner = [Word("echo", True)]
            else:
                if floor != "allow":
                    self.emit(
                        Part("bash", " ".join(w.text for w in words), floor, "; ".join(notes))
                    )
                return cwds, cwds
        inner_cwds = cwds
        self.simple(inner, floor, notes, inner_cwds, depth + 1, stdin_script=stdin_script)
        if cmd == "exec":
            return cwds, cwds
        return cwds, cwds

    def shell_invocation(
        self, args: list[Word], cwds: Cwds, depth: int, stdin_script: tuple[str, bool] | None
    ) -> None:
        i = 0
        command_mode = False
        reads_stdin = False
        while i < len(args):
            w = args[i]
            if not w.static:
                self.unsure(" ".join(a.text for a in args), "shell options that are not fixed")
                return
            t = w.text
            if t in {"--", "-"}:
                i += 1
                break
            if t in ("--rcfile", "--init-file", "-o", "+o", "-O", "+O"):
                i += 2
                continue
            if t.startswith("--"):
                i += 1
                continue
            if len(t) > 1 and t[0] in "-+":
                if "c" in t[1:]:
                    command_mode = True
                if "s" in t[1:]:
                    reads_stdin = True
                i += 1
                if "o" in t[1:] or "O" in t[1:]:
                    i += 1
                continue
            break
        rest = args[i:]
        if command_mode:
            if not rest:
                self.unsure("", "shell -c without a command")
                return
            self.shell_string(rest[0], cwds, depth)
            return
        if rest and not reads_stdin:
            return  # runs a script file: decided by the bash rules on "bash FILE"
        if stdin_script is not None:
            script, static = stdin_script
            if not static:
                self.unsure(script[:200], "shell script fed with expansions in it")
            self.source(script, cwds, depth + 1)
            return
        self.unsure("", "a shell reading commands from its standard input")

    def shell_string(self, w: Word, cwds: Cwds, depth: int) -> None:
        if not w.static:
            self.unsure(w.text, "shell code that is not a fixed string")
        self.source(w.text, cwds, depth + 1)

    def inline_source(
        self, text: str, cwds: Cwds, depth: int, *, subshell: bool = False
    ) -> tuple[Cwds, Cwds]:
        after = self.source(text, cwds, depth + 1)
        if subshell:
            return cwds, cwds
        return after, _union(cwds, after)

    def find_exec(self, args: list[Word], cwds: Cwds, depth: int) -> None:
        i = 0
        while i < len(args):
            t = args[i].text
            if t in ("-exec", "-execdir", "-ok", "-okdir"):
                j = i + 1
                while j < len(args) and args[j].text not in (";", "+"):
                    j += 1
                inner = args[i + 1 : j]
                if j >= len(args):
                    self.unsure(
                        "find " + " ".join(a.text for a in args), "find -exec without ; or +"
                    )
                if inner:
                    # -execdir runs in each file's directory: the directory is unknown.
                    where = None if t in ("-execdir", "-okdir") else cwds
                    self.simple(list(inner), "allow", [], where, depth + 1)
                i = j + 1
                continue
            if t in ("-delete", "-fprint", "-fprint0", "-fprintf", "-fls"):
                pass  # matched by the bash rules on the find command itself
            i += 1

    # -- directories and paths --------------------------------------------------------------

    def resolve(self, w: Word, cwds: Cwds) -> list[str] | None:
        """Absolute paths a word may name; None if it cannot be known."""
        if not w.static:
            return None
        text = w.text
        if text.startswith("~"):
            if self.home is None or not (text == "~" or text.startswith("~/")):
                return None
            text = self.home + text[1:]
        if re.search(r"[{}]", text) and w.pattern:
            return None  # brace expansion may name other places
        if w.pattern and any(_may_match_dotdot(c) for c in text.split("/")):
            return None  # `.*` may match `..` (bash before 5.2, dotglob)
        if text.startswith("/"):
            return [posixpath.normpath(text)]
        if cwds is None:
            return None
        return sorted({posixpath.normpath(posixpath.join(c, text)) for c in cwds})

    def inside_root(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")

    def change_directory(self, cmd: str, args: list[Word], cwds: Cwds) -> tuple[Cwds, Cwds]:
        targets = _non_options(args)  # `cd -- -weird` goes to -weird
        if cmd == "popd" or (targets and targets[0].text == "-" and targets[0].static):
            return None, None
        if not targets:
            if cmd == "pushd":
                return None, None
            if self.home is None:
                self.emit(Part("external_directory", "~", "ask", "cd to an unknown home"))
                return None, None
            targets = [Word(self.home, True)]
        paths = self.resolve(targets[0], cwds)
        if paths is None:
            self.emit(
                Part(
                    "external_directory",
                    targets[0].text,
                    "ask",
                    "cd to a directory that is not fixed",
                )
            )
            return None, None
        for p in paths:
            if not self.inside_root(p):
                self.emit(Part("external_directory", p))
        new = frozenset(paths)
        return new, _union(cwds, new)

    def path_arguments(self, cmd: str, args: list[Word], cwds: Cwds) -> None:
        if cmd == "find":
            # find's paths come first, before its expression (-name, !, ( …).
            paths = []
            for w in args:
                if w.static and (w.text.startswith("-") or w.text in ("!", "(")):
                    break
                paths.append(w)
        elif cmd == "dd":
            paths = [w for w in args if w.text.startswith(("if=", "of="))]
        else:
            paths = _non_options(args)
        if cmd in _FIRST_ARG_NOT_PATH and paths:
            paths = paths[1:]
        for w in paths:
            if w.static and w.text.startswith(("http://", "https://")):
                continue
            target = w
            if cmd == "dd":
                if "=" not in w.text:
                    continue
                target = Word(w.text.split("=", 1)[1], w.static, w.pattern, w.node)
            resolved = self.resolve(target, cwds)
            if resolved is None:
                self.emit(
                    Part("external_directory", w.text, "ask", f"{cmd} on a path that is not fixed")
                )
                continue
            for p in resolved:
                if not self.inside_root(p):
                    self.emit(Part("external_directory", p))

    def write_target(self, w: Word, cwds: Cwds) -> None:
        if w.static and (w.text in NOT_WRITES or _DEV_FD.match(w.text)):
            return
        if w.pattern and re.search(r"[*?\[]", w.text):
            # A glob target writes to whichever file it happens to match.
            self.emit(Part("write", w.text, "ask", "writes to a path a glob picks"))
            return
        resolved = self.resolve(w, cwds)
        if resolved is None:
            self.emit(Part("write", w.text, "ask", "writes to a path that is not fixed"))
            return
        for p in resolved:
            if p in NOT_WRITES:
                continue
            if self.inside_root(p):
                rel = posixpath.relpath(p, self.root)
                self.emit(Part("write", rel, variants=(p,)))
            else:
                self.emit(Part("write", p))
                self.emit(Part("external_directory", p))

    def redirect(self, r: Node, cwds: Cwds, depth: int) -> tuple[str, bool] | None:
        """Walk one redirection; return a here-document's (text, static) for a shell to run."""
        t = r.type
        if t == "file_redirect":
            ops = [c.type for c in r.children if not c.is_named]
            dests = [c for c in r.children if c.is_named and c.type != "file_descriptor"]
            op = ops[0] if ops else ""
            if not dests:
                return None
            dest = self.expand_group(_touching_groups(dests)[0], cwds, depth)
            copies_fd = dest.static and (dest.text.isdigit() or dest.text == "-")
            if op in _WRITE_OPS or (op in (">&", ">&-") and not copies_fd):
                self.write_target(dest, cwds)
            return None
        if t == "herestring_redirect":
            content = [c for c in r.children if c.is_named]
            if not content:
                return None
            w = self.expand(content[0], cwds, depth)
            return w.text, w.static
        if t == "heredoc_redirect":
            start = next((c for c in r.children if c.type == "heredoc_start"), None)
            body = next((c for c in r.children if c.type == "heredoc_body"), None)
            quoted = start is not None and any(q in _text(start) for q in "'\"\\")
            if body is None:
                return "", True
            text = _text(body)
            if quoted:
                return text, True
            strip_tabs = any(c.type == "<<-" for c in r.children)
            return text, self.heredoc_expansions(text, strip_tabs, cwds, depth)
        self.scan(r, cwds, depth)
        return None

    def heredoc_expansions(self, text: str, strip_tabs: bool, cwds: Cwds, depth: int) -> bool:
        """Walk what bash expands in an unquoted here-document body; True if it expands nothing.

        The body is parsed again on its own (tree-sitter leaves ``<<-`` bodies and backticks
        in bodies unparsed): ``$(…)`` and ``${…}`` are walked from the tree, backticks by hand.
        """
        if strip_tabs:
            text = "\n".join(line.lstrip("\t") for line in text.split("\n"))
        if not re.search(r"[$`]", text):
            return True
        delim = "GATEKEEPER_EOF"
        while delim in text:
            delim += "_"
        data = f"cat <<{delim}\n{text}\n{delim}\n".encode("utf-8", "surrogateescape")
        tree = Parser(_LANGUAGE).parse(data)
        body = _first_of_type(tree.root_node, "heredoc_body")
        if tree.root_node.has_error or body is None:
            self.unsure(text[:200], "here-document gatekeeper cannot parse with confidence")
            return False
        if not body.children and re.search(r"\$[({]", text):
            self.unsure(text[:200], "here-document gatekeeper cannot parse with confidence")
            return False
        blanked = bytearray(data[body.start_byte : body.end_byte])
        for c in body.children:
            if c.type == "heredoc_content":
                continue
            self.scan(c, cwds, depth)
            if c.type == "command_substitution":
                lo, hi = c.start_byte - body.start_byte, c.end_byte - body.start_byte
                blanked[lo:hi] = b" " * (hi - lo)
        self.loose_backticks(bytes(blanked).decode("utf-8", "surrogateescape"), cwds, depth)
        return False

    def loose_backticks(self, text: str, cwds: Cwds, depth: int) -> None:
        """Walk the backtick substitutions of text bash expands but tree-sitter did not parse."""
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "`":
                j = i + 1
                while j < n and text[j] != "`":
                    j += 2 if text[j] == "\\" else 1
                if j >= n:
                    self.unsure(text[i : i + 200], "backtick without its closing backtick")
                    return
                self.backticks(text[i + 1 : j], False, cwds, depth)
                i = j + 1
                continue
            i += 1

    def backticks(self, body: str, in_double_quotes: bool, cwds: Cwds, depth: int) -> None:
        """Walk the code of one `…` substitution as bash reads it."""
        specials = '$`\\"' if in_double_quotes else "$`\\"
        out: list[str] = []
        i, n = 0, len(body)
        while i < n:
            if body[i] == "\\" and i + 1 < n and body[i + 1] in specials:
                out.append(body[i + 1])
                i += 2
                continue
            out.append(body[i])
            i += 1
        code = "".join(out)
        if not code.strip():
            self.unsure("``", "empty substitution")
            return
        self.source(code, cwds, depth + 1)

    # -- words and assignments --------------------------------------------------------------

    def expand_group(self, nodes: Sequence[Node], cwds: Cwds, depth: int) -> Word:
        """One bash word made of touching tree-sitter nodes."""
        if len(nodes) == 1:
            return self.expand(nodes[0], cwds, depth)
        pieces = [self.expand(n, cwds, depth) for n in nodes]
        return Word(
            "".join(w.text for w in pieces),
            all(w.static for w in pieces),
            any(w.pattern for w in pieces),
            nodes[0],
        )

    def expand(self, node: Node, cwds: Cwds, depth: int) -> Word:
        """The word's value; every substitution inside it is walked as commands of its own."""
        self.scan(node, cwds, depth)
        return word_of(node)

    def assignment(self, node: Node, cwds: Cwds, depth: int, *, standalone: bool) -> str | None:
        self.scan(node, cwds, depth)
        name_node = node.child_by_field_name("name")
        name = _text(name_node) if name_node is not None else None
        if name_node is not None and name_node.type != "variable_name":
            name = None  # a[…]=x: an array element
        if standalone and (name is None or name not in HARMLESS_VARS):
            self.emit(
                Part(
                    "bash",
                    _text(node),
                    "ask",
                    f"sets {name or 'an array element'} for the rest of the line",
                )
            )
        return name

    def scan(self, node: Node, cwds: Cwds, depth: int, *, test_context: bool = False) -> None:
        """Find and walk every substitution below ``node`` (in any position)."""
        stack = [node]
        while stack:
            n = stack.pop()
            self.budget.nodes += 1
            if self.budget.nodes > MAX_NODES:
                if not self.budget.exhausted:
                    self.budget.exhausted = True
                    self.unsure("", "command line too large to check")
                return
            t = n.type
            if t == "command_substitution" and n.children and n.children[0].type == "`":
                # bash reads `…` by removing the backslash of \\ \` \$ (and \" inside
                # double quotes), then parses the result: nested backticks run too.
                self.backticks(_text(n)[1:-1], _inside_double_quotes(n), cwds, depth)
                continue
            if t in ("command_substitution", "process_substitution"):
                inner = list(n.named_children)
                if not inner:
                    self.unsure(_text(n), "empty substitution")
                self.sequence(inner, cwds, depth + 1)
                continue
            if t in _STATEMENTS and n is not node:
                self.stmt(n, cwds, depth + 1)
                continue
            if test_context and t == "raw_string" and re.search(r"[\[`$]", _text(n)):
                self.unsure(_text(n), "quoted text a test may evaluate as code")
            if t == "expansion":
                self.parameter_expansion(n, cwds, depth)
            elif t in ("arithmetic_expansion", "subscript"):
                self.arithmetic(n)
            elif test_context and t in ("binary_expression", "unary_expression"):
                self.test_operands(n)
            if t == "ERROR":
                self.unsure(_text(n)[:200], "bash syntax gatekeeper cannot parse with confidence")
            stack.extend(reversed(n.children))

    def parameter_expansion(self, n: Node, cwds: Cwds, depth: int) -> None:
        """``${…}``: find what bash evaluates as code that tree-sitter leaves as plain text.

        tree-sitter reads the operand of ``${x#…}``, ``${x%…}``, ``${x/…}``, ``${x^…}``,
        ``${x,,…}``, ``${x?…}``, ``${x:=…}`` … as one opaque word, regex or raw string, and
        backticks inside ``${…}`` are never parsed; bash expands them all (inside double quotes
        even between single quotes). Such text is walked again as code and never allowed.
        """
        text = _text(n)
        if re.search(r"@P\}$", text):
            self.unsure(text, "${…@P} runs a variable's value as a prompt: it may hold code")
        if text.startswith("${!") and not re.match(
            r"^\$\{![A-Za-z_][A-Za-z0-9_]*(\[[@*]\]|[@*])\}$", text
        ):
            self.unsure(text, "${!…} uses a variable's value as a name: it may hold code")
        assigned = re.match(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):?=", text)
        if assigned and assigned.group(1) not in HARMLESS_VARS:
            # `${CDPATH:=/}` sets a variable for the rest of the line, as `CDPATH=/` would
            self.unsure(text, f"sets {assigned.group(1)} for the rest of the line")
        m = re.match(r"^\$\{#?[A-Za-z_0-9]+(\[[^]]*\])?:([^-=?+].*)\}$", text, re.S)
        if m and re.search(r"[A-Za-z_$`]", m.group(2)):
            self.unsure(text, "a substring offset is arithmetic on values that may hold code")
        stack = list(n.children)
        while stack:
            c = stack.pop()
            if c.type in ("command_substitution", "process_substitution", "expansion"):
                continue  # walked by scan as what they are
            if c.child_count == 0 and c.is_named:
                leaf = _text(c)
                if re.search(r"`|\$\(|\$\[|[<>]\(", leaf):
                    self.unsure(text[:200], "substitution inside ${…} gatekeeper cannot parse")
                    body = leaf[1:-1] if c.type == "raw_string" else leaf
                    self.source(": " + body, cwds, depth + 1)
            stack.extend(c.children)

    def arithmetic(self, n: Node) -> None:
        """Arithmetic (``$((…))``, ``$[…]``, array subscripts) evaluates a variable's value as
        an expression, and ``a[$(cmd)]`` inside that value runs cmd: only literals are sure."""
        if n.type == "subscript":
            index = n.child_by_field_name("index")
            if index is None or re.match(r"^([0-9]+|[@*])$", _text(index)):
                return
            what = index
        else:
            what = n
        if _only_literal_arithmetic(what):
            return
        self.unsure(_text(n)[:200], "arithmetic on values that may hold code")

    def test_operands(self, n: Node) -> None:
        """``[[ a -eq b ]]`` evaluates both sides as arithmetic; ``[[ -v $x ]]`` a subscript."""
        op = n.child_by_field_name("operator")
        if op is None or _inside_single_bracket_test(n):
            return
        if _text(op) in _ARITH_TEST_OPS or _text(op) == "-v":
            for c in n.named_children:
                if c.id == op.id:
                    continue
                if _text(op) == "-v" and c.type == "word" and "[" not in _text(c):
                    continue
                if not re.match(r"^-?[0-9]+$", _text(c)):
                    self.unsure(_text(n)[:200], "a test evaluates values that may hold code")
                    return


# Reserved words after which bash reads a command (a misparse leaves them as command names).
_RESERVED_BEFORE_COMMAND = _names("{ ! then do else elif if while until")

_ARITH_TEST_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_LITERAL_ARITH = frozenset(
    {"number", "binary_expression", "unary_expression", "ternary_expression",
     "parenthesized_expression"}
)  # fmt: skip


def _only_literal_arithmetic(node: Node) -> bool:
    stack = list(node.named_children) if node.type == "arithmetic_expansion" else [node]
    while stack:
        c = stack.pop()
        if c.type not in _LITERAL_ARITH:
            return False
        stack.extend(c.named_children)
    return True


def _counting_loop(node: Node) -> bool:
    """``for ((i=0; i<3; i++))``: its variables start as literal numbers and the body does
    not name them except as ``$i``/``${i}`` (``read i`` there would make ``i<3`` run code)."""
    header = [c for c in node.named_children if c.type not in _STATEMENTS]
    body = node.child_by_field_name("body")
    literal: set[str] = set()
    names: set[str] = set()
    for c in header:
        stack = [c]
        while stack:
            n = stack.pop()
            if n.type == "variable_assignment":
                name, value = n.child_by_field_name("name"), n.child_by_field_name("value")
                if name is None or value is None or value.type != "number":
                    return False
                literal.add(_text(name))
                names.add(_text(name))
                continue
            if n.type in ("variable_name", "word"):
                names.add(_text(n))
            elif n.type not in _LITERAL_ARITH and n.type != "postfix_expression":
                return False
            stack.extend(n.named_children)
    if not names <= literal or not all(re.search("[a-z]", n) for n in names):
        return False  # (PATH, IFS, HOME … are upper case: `for ((PATH=0;;))` changes PATH)
    body_text = _text(body) if body is not None else ""
    return not any(re.search(rf"(?<![$\w{{])\b{re.escape(name)}\b", body_text) for name in names)


def _inside_single_bracket_test(node: Node) -> bool:
    p = node.parent
    while p is not None and p.type != "test_command":
        p = p.parent
    return p is not None and bool(p.children) and p.children[0].type == "["


_STATEMENTS = _names(
    "command list pipeline subshell compound_statement redirected_statement "
    "negated_command if_statement while_statement for_statement c_style_for_statement "
    "case_statement function_definition declaration_command unset_command test_command "
    "variable_assignments do_group elif_clause else_clause case_item"
)


def _dropped_text(node: Node) -> bool:
    """Whether anything but blanks lies between the children of node (tree-sitter drops `\\ `)."""
    data = node.text or b""
    base = node.start_byte
    prev_end = None
    for c in node.children:
        if prev_end is not None and c.start_byte > prev_end:
            gap = data[prev_end - base : c.start_byte - base]
            if gap.strip(b" \t\n"):
                return True
        prev_end = c.end_byte
    return False


def _touching_groups(nodes: Sequence[Node]) -> list[list[Node]]:
    """Split nodes into bash words: nodes with no blank between them are one word."""
    groups: list[list[Node]] = []
    for n in nodes:
        if groups and groups[-1][-1].end_byte == n.start_byte:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


def _first_of_type(node: Node, node_type: str) -> Node | None:
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == node_type:
            return n
        stack.extend(reversed(n.children))
    return None


def _inside_double_quotes(node: Node) -> bool:
    p = node.parent
    while p is not None:
        if p.type == "string":
            return True
        if p.type in ("command_substitution", "process_substitution", "program"):
            return False
        p = p.parent
    return False


_TOKEN_TYPES = _names(
    "comment raw_string string ansi_c_string translated_string heredoc_body heredoc_start"
)


def _join_continuations(data: bytes, root: Node) -> bytes | None:
    """``data`` without the backslash-newlines tree-sitter read as blanks; None if none."""
    cuts: list[int] = []
    i = data.find(b"\\\n")
    while i != -1:
        node: Node | None = root.descendant_for_byte_range(i, i + 1)
        in_token = node is not None and node.child_count == 0 and node.start_byte <= i
        while node is not None and not in_token:
            in_token = node.type in _TOKEN_TYPES
            node = node.parent
        if not in_token:
            cuts.append(i)
        i = data.find(b"\\\n", i + 2)
    if not cuts:
        return None
    out = bytearray()
    last = 0
    for c in cuts:
        out += data[last:c]
        last = c + 2
    out += data[last:]
    return bytes(out)


def _may_match_dotdot(component: str) -> bool:
    return component.startswith(".") and bool(re.search(r"[*?\[]", component))


_DECLARATIONS = frozenset({"declare", "typeset", "local", "export", "readonly"})


def arithmetic_evaluation(cmd: str, args: Sequence[Word]) -> str | None:
    """Why a builtin may run code hidden in a value, or None.

    bash evaluates array subscripts and integer values as arithmetic, and arithmetic runs
    command substitutions inside the value: ``let 'x=a[$(rm -rf ~)]'`` runs rm. Checked with
    real bash: let, declare -i, a declared or printf -v'd name with a subscript, test -v with a
    subscript. (read -a and unset do not evaluate the subscript.)
    """

    def subscripted(w: Word) -> bool:
        return not w.static or "[" in w.text

    if cmd == "let":
        return "let evaluates arithmetic, and a value can carry code"
    if cmd in _DECLARATIONS:
        for w in args:
            if w.text.startswith(("-", "+")):
                if "i" in w.text[1:]:
                    return f"{cmd} -i evaluates values as arithmetic, which can carry code"
                continue
            name = w.text.split("=", 1)[0]  # NAME, NAME=value, or NAME[sub]=value
            if any(ch in name for ch in "[$`"):
                return f"{cmd} with a subscript or a name that is not fixed can run code"
        return None
    if cmd == "printf":
        texts = [w.text for w in args]
        if "-v" in texts:
            i = texts.index("-v")
            if i + 1 < len(args) and subscripted(args[i + 1]):
                return "printf -v into a subscript or a name that is not fixed can run code"
        return None
    if (
        cmd in ("test", "[")
        and any(w.text == "-v" for w in args)
        and any(subscripted(w) for w in args if w.text not in ("-v", "]"))
    ):
        return "test -v with a subscript can run code"
    return None


def _union(a: Cwds, b: Cwds) -> Cwds:
    if a is None or b is None:
        return None
    u = a | b
    return u if len(u) <= MAX_CWDS else None


def _non_options(words: Sequence[Word]) -> list[Word]:
    out: list[Word] = []
    ended = False
    for w in words:
        if not ended and w.static and w.text == "--":
            ended = True
            continue
        if not ended and w.static and w.text.startswith("-") and w.text != "-":
            continue
        out.append(w)
    return out


def _variants(words: Sequence[Word]) -> tuple[str, ...]:
    out: list[str] = []
    name = words[0].text
    rest = [w.text for w in words[1:]]
    if "/" in name and posixpath.basename(name):
        out.append(" ".join([posixpath.basename(name), *rest]))
    joined = " ".join([name, *rest])
    collapsed = " ".join(joined.split())
    if collapsed != joined:
        out.append(collapsed)
        if "/" in name:
            out.append(" ".join(" ".join([posixpath.basename(name), *rest]).split()))
    return tuple(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------
# Wrappers


@dataclass(frozen=True, slots=True)
class WrapperSpec:
    """How to find the command a wrapper runs: its options, and what comes before the command."""

    flags: frozenset[str]  # options without an argument
    with_arg: frozenset[str]  # options that take the next word (or =value / attached)
    assignments: bool = False  # NAME=value words may come before the command
    positional: int = 0  # words before the command (timeout's DURATION)
    dir_options: frozenset[str] = frozenset()

    def split(self, args: Sequence[Word]) -> tuple[list[Word] | None, list[Word], bool]:
        """(the inner command's words or None if unsure, NAME=value words, changes dir)."""
        i = 0
        assigns: list[Word] = []
        changes_dir = False
        while i < len(args):
            w = args[i]
            if not w.static:
                return None, assigns, changes_dir
            t = w.text
            if t == "--":
                i += 1
                break
            if t.startswith("--") and len(t) > 2:
                name = t.split("=", 1)[0]
                if name in self.dir_options:
                    changes_dir = True
                if name in self.flags:
                    i += 1
                    continue
                if name in self.with_arg:
                    i += 1 if "=" in t else 2
                    continue
                return None, assigns, changes_dir
            if t.startswith("-") and len(t) > 1 and not (self.positional and t[1:].isdigit()):
                j = 1
                while j < len(t):
                    opt = "-" + t[j]
                    if opt in self.dir_options:
                        changes_dir = True
                    if opt in self.with_arg:
                        if j == len(t) - 1:
                            i += 1  # the argument is the next word
                        break
                    if opt not in self.flags:
                        if t[1:].lstrip("-").isdigit() and "-N" in self.flags:
                            break  # nice -10
                        return None, assigns, changes_dir
                    j += 1
                i += 1
                continue
            break
        while (
            self.assignments
            and i < len(args)
            and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", args[i].text)
        ):
            assigns.append(args[i])
            i += 1
        i += self.positional
        if i > len(args):
            return [], assigns, changes_dir
        return list(args[i:]), assigns, changes_dir


def _opts(names: str = "") -> frozenset[str]:
    return frozenset(names.split())


WRAPPERS: dict[str, WrapperSpec] = {
    "sudo": WrapperSpec(
        _opts(
            "-A -b -E -H -i -K -k -n -P -S -s -V -v --askpass --background --preserve-env "
            "--set-home --login --remove-timestamp --reset-timestamp --non-interactive "
            "--preserve-groups --stdin --shell"
        ),
        _opts(
            "-u -g -h -p -C -D -r -t -T -U --user --group --host --prompt --close-from --chdir "
            "--role --type --command-timeout --other-user"
        ),
        assignments=True,
        dir_options=_opts("-D --chdir"),
    ),
    "doas": WrapperSpec(_opts("-n -s -L"), _opts("-u -C")),
    "env": WrapperSpec(
        _opts("-i -0 -v --ignore-environment --null --debug -"),
        _opts(
            "-u --unset -C --chdir -S --split-string --block-signal --default-signal "
            "--ignore-signal -P"
        ),
        assignments=True,
        dir_options=_opts("-C --chdir"),
    ),
    "nice": WrapperSpec(_opts("-N"), _opts("-n --adjustment")),
    "ionice": WrapperSpec(_opts("-t --ignore"), _opts("-c -n --class --classdata")),
    "nohup": WrapperSpec(_opts(""), _opts("")),
    "timeout": WrapperSpec(
        _opts("-v --verbose --preserve-status --foreground"),
        _opts("-s -k --signal --kill-after"),
        positional=1,
    ),
    "time": WrapperSpec(
        _opts("-p -v -a --portability --verbose --append -q --quiet"),
        _opts("-f -o --format --output"),
    ),
    "command": WrapperSpec(_opts("-p -v -V"), _opts("")),
    "builtin": WrapperSpec(_opts(""), _opts("")),
    "exec": WrapperSpec(_opts("-c -l"), _opts("-a")),
    "coproc": WrapperSpec(_opts(""), _opts("")),
    "stdbuf": WrapperSpec(_opts(""), _opts("-i -o -e --input --output --error")),
    "setsid": WrapperSpec(_opts("-c -f -w --ctty --fork --wait"), _opts("")),
    "xargs": WrapperSpec(
        _opts(
            "-0 -o -p -r -t -x --null --open-tty --interactive --no-run-if-empty --verbose "
            "--exit --show-limits -e -i -l"
        ),
        _opts(
            "-a -d -E -I -L -n -P -s --arg-file --delimiter --eof --replace --max-lines "
            "--max-args --max-procs --max-chars --process-slot-var"
        ),
    ),
}

WATCH_OPTS = WrapperSpec(
    _opts(
        "-b -c -C -e -g -p -t -w -x --beep --color --no-color --errexit --chgexit --precise "
        "--no-title --no-wrap --exec -d --differences"
    ),
    _opts("-n --interval -q --equexit"),
)


# --------------------------------------------------------------------------------------------


def analyse(command: str, cwd: str, home: str | None = None) -> Analysis:
    """Split ``command`` into the parts a policy decides (see the module docstring).

    ``cwd`` is the project root: relative paths resolve against it and paths outside it are
    external. ``home`` expands ``~``; without it, ``~`` paths are unknown (ask).
    Raises :class:`BadInput` for NUL bytes and invalid UTF-8.
    """
    command = check_input(command)
    walker = _Walker(cwd, home)
    odd = invisible_characters(command)
    if odd:
        walker.unsure(
            command, "invisible or control characters in the command: " + ", ".join(odd[:5])
        )
    if not command.strip():
        walker.unsure("", "empty command")
    else:
        walker.source(command, frozenset({walker.root}), 0)
    if not walker.parts:
        walker.unsure(command, "no command to check")
    return Analysis(command, tuple(dict.fromkeys(walker.parts)))
