"""Words and quoting: what one shell word means once bash has removed its quotes.

Pure functions over text (and tree-sitter nodes for :func:`word_of`). The independent readers
in :mod:`gatekeeper.shell.mvdan` use their own quote removal on purpose: a bug here must not be
repeated there, or the readings would agree on the same wrong value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from tree_sitter import Node

from gatekeeper.errors import BadInput


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
            if not ch.isascii():
                return None  # bash takes the first byte of a multi-byte character: unsure
            # bash's TOCTRL: \c? is DEL, anything else is its upper case ANDed with 0x1f;
            # `\c\\` takes the escaped backslash whole (`\c\x` only its first backslash).
            out.append("\x7f" if ch == "?" else chr(ord(ch.upper()) & 0x1F))
            i += 4 if body[i + 2 : i + 4] == "\\\\" else 3
        else:
            out.append("\\" + nxt)
            i += 2
    decoded = "".join(out)
    # bash ends a $'…' string at its first NUL: $'rm\c@xyz' is "rm".
    nul = decoded.find("\x00")
    return decoded if nul < 0 else decoded[:nul]


_DQ_ESCAPES = frozenset('$`"\\\n')
_HEREDOC_ESCAPES = frozenset("$`\\\n")
PATTERN_CHARS = frozenset("*?[]{}~")


def unescape_unquoted(raw: str) -> tuple[str, bool]:
    """Quote removal of unquoted text: (value, whether it holds glob/brace/tilde characters)."""
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
        if ch in PATTERN_CHARS:
            pattern = True
        out.append(ch)
        i += 1
    return "".join(out), pattern


def unescape_double(raw: str) -> str:
    """Quote removal inside double quotes: a backslash escapes only ``$ ` " \\`` and newline."""
    return _unescape(raw, _DQ_ESCAPES)


def expand_heredoc_body(raw: str) -> str:
    """The text bash gives a command for an unquoted here-document body without expansions.

    In such a body a backslash escapes only ``$``, ````` and ``\\``, and a backslash-newline
    is removed (bash's here-document rules): ``a\\\\;b`` reaches the command as ``a\\;b``.
    """
    return _unescape(raw, _HEREDOC_ESCAPES)


def _unescape(raw: str, escapes: frozenset[str]) -> str:
    """Remove the backslash before each character of ``escapes`` (a newline goes with it)."""
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] in escapes:
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def node_text(node: Node) -> str:
    """The source text of a tree-sitter node."""
    data = node.text
    return data.decode("utf-8", "surrogateescape") if data is not None else ""


def double_quoted(node: Node, expansion: Callable[[Node], str]) -> tuple[str, bool]:
    """The value of a ``"…"`` node with each expansion in it replaced by ``expansion(child)``;
    and whether it had none.

    Works from the source bytes: tree-sitter folds blanks into its quote and ``$`` tokens
    (``" "`` has no string_content), so the children alone lose characters.
    """
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
        pieces.append(unescape_double(data[pos:a].decode("utf-8", "surrogateescape")))
        pieces.append(expansion(c))
        static = False
        pos = b
    pieces.append(unescape_double(data[pos:hi].decode("utf-8", "surrogateescape")))
    return "".join(pieces), static


def word_of(node: Node) -> Word:
    """The :class:`Word` value of one argument-like node."""
    t = node.type
    if t == "word":
        value, pattern = unescape_unquoted(node_text(node))
        return Word(value, True, pattern, node)
    if t == "number":
        return Word(node_text(node), True, False, node)
    if t == "raw_string":
        return Word(node_text(node)[1:-1], True, False, node)
    if t == "ansi_c_string":
        decoded = decode_ansi_c(node_text(node)[2:-1])
        if decoded is None:
            return Word(node_text(node), False, False, node)
        return Word(decoded, True, False, node)
    if t in ("string", "translated_string"):
        text, static = double_quoted(node, node_text)
        return Word(text, static, False, node)
    if t == "concatenation":
        parts = [word_of(c) for c in node.children]
        return Word(
            "".join(p.text for p in parts),
            all(p.static for p in parts),
            any(p.pattern for p in parts),
            node,
        )
    return Word(node_text(node), False, True, node)


def backtick_end(text: str) -> int:
    """Where bash ends the backtick substitution that ``text`` starts: its first backtick
    after the opening one that no backslash escapes (-1: none)."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "`":
            return i
        i += 1
    return -1
