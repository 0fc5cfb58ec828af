"""tree-sitter-bash: parsing a piece of shell text, and small facts about its syntax nodes.

The one place that knows tree-sitter's quirks and corrects those that bash reads differently
(backslash-newlines taken for blanks, touching pieces split into two words, text dropped
between tokens or swallowed into a word: :func:`misread`). Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tree_sitter_bash
from tree_sitter import Language, Node, Parser, Tree

from gatekeeper.shell.reading import EXPANSION, UNKNOWN
from gatekeeper.shell.tables import names
from gatekeeper.shell.words import decode_ansi_c, double_quoted, node_text, unescape_unquoted

LANGUAGE = Language(tree_sitter_bash.language())
FUNSUB = re.compile(r"\$\{[ \t\n|]")  # bash 5.3 ${ cmd; } and ${| cmd; }
# tree-sitter-bash 0.25 reads out of bounds (and may crash the process) on code points from
# plane 4 up after `{`, `$` …; no assigned character lives there but tag characters and
# private use. Such text is never parsed.
UNPARSABLE = re.compile("[\U00040000-\U0010ffff]")

STATEMENTS = names(
    "command list pipeline subshell compound_statement redirected_statement "
    "negated_command if_statement while_statement for_statement c_style_for_statement "
    "case_statement function_definition declaration_command unset_command test_command "
    "variable_assignments do_group elif_clause else_clause case_item"
)
REDIRECTS = frozenset({"file_redirect", "heredoc_redirect", "herestring_redirect"})
LITERAL_ARITH = frozenset(
    {"number", "binary_expression", "unary_expression", "ternary_expression",
     "parenthesized_expression"}
)  # fmt: skip
_TOKEN_TYPES = names(
    "comment raw_string string ansi_c_string translated_string heredoc_body heredoc_start"
)


def parse(data: bytes) -> Tree:
    """Parse shell source as bash reads it.

    bash removes a backslash-newline outside quotes before it splits words (``r\\<newline>m``
    is ``rm``); tree-sitter takes it for a blank. Such pairs are removed and the text parsed
    again; then plain words tree-sitter skipped are quoted so that it reads them
    (:func:`quote_dropped_words`). The tree's text is the repaired text, not ``data``.
    """
    tree = Parser(LANGUAGE).parse(data)
    for repair in (join_continuations, quote_dropped_words):
        for _ in range(4):  # a few rounds: one repair can reveal another
            repaired = repair(data, tree.root_node)
            if repaired is None:
                break
            data = repaired
            tree = Parser(LANGUAGE).parse(data)
    return tree


_PLAIN_WORDS = re.compile(rb"[ \t]*[A-Za-z0-9_@%+=:,./-]+(?:[ \t]+[A-Za-z0-9_@%+=:,./-]+)*[ \t]*")


def quote_dropped_words(data: bytes, root: Node) -> bytes | None:
    """``data`` with plain words tree-sitter skipped put in single quotes; None if none.

    tree-sitter drops a lone ``-`` before a here-document (``python3 - <<EOF``), a word bash
    reads like any other. Quoting a word of plain characters does not change what bash reads;
    it lets tree-sitter see it. Other skipped text is left for :func:`misread` to report.
    """
    cuts: list[tuple[int, int]] = []
    for start, end in _gaps(root):
        gap = data[start:end]
        if gap.strip(b" \t\n") and _PLAIN_WORDS.fullmatch(gap):
            cuts.append((start, end))
    if not cuts:
        return None
    out = bytearray()
    last = 0
    for start, end in cuts:
        out += data[last:start]
        out += re.sub(rb"[^ \t]+", lambda m: b"'" + m.group(0) + b"'", data[start:end])
        last = end
    out += data[last:]
    return bytes(out)


def _gaps(root: Node) -> list[tuple[int, int]]:
    """Byte ranges between consecutive tokens of the tree (see :func:`misread`)."""
    out: list[tuple[int, int]] = []
    prev_end = root.start_byte
    stack = [root]
    while stack:
        n = stack.pop()
        if n.child_count == 0 or n.type in _OPAQUE:
            if n.start_byte > prev_end:
                out.append((prev_end, n.start_byte))
            prev_end = max(prev_end, n.end_byte)
            continue
        stack.extend(reversed(n.children))
    return out


def parses_cleanly(text: str) -> bool:
    return not Parser(LANGUAGE).parse(text.encode("utf-8", "surrogateescape")).root_node.has_error


def join_continuations(data: bytes, root: Node) -> bytes | None:
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


def touching_groups(nodes: Sequence[Node]) -> list[list[Node]]:
    """Split nodes into bash words: nodes with no blank between them are one word."""
    groups: list[list[Node]] = []
    for n in nodes:
        if groups and groups[-1][-1].end_byte == n.start_byte:
            groups[-1].append(n)
        else:
            groups.append([n])
    return groups


def first_of_type(node: Node, node_type: str) -> Node | None:
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == node_type:
            return n
        stack.extend(reversed(n.children))
    return None


def inside_double_quotes(node: Node) -> bool:
    p = node.parent
    while p is not None:
        if p.type == "string":
            return True
        if p.type in ("command_substitution", "process_substitution", "program"):
            return False
        p = p.parent
    return False


def only_literal_arithmetic(node: Node) -> bool:
    stack = list(node.named_children) if node.type == "arithmetic_expansion" else [node]
    while stack:
        c = stack.pop()
        if c.type not in LITERAL_ARITH:
            return False
        stack.extend(c.named_children)
    return True


def counting_loop(node: Node) -> bool:
    """``for ((i=0; i<3; i++))``: its variables start as literal numbers and the body does
    not name them except as ``$i``/``${i}`` (``read i`` there would make ``i<3`` run code)."""
    header = [c for c in node.named_children if c.type not in STATEMENTS]
    body = node.child_by_field_name("body")
    literal: set[str] = set()
    seen: set[str] = set()
    for c in header:
        stack = [c]
        while stack:
            n = stack.pop()
            if n.type == "variable_assignment":
                name, value = n.child_by_field_name("name"), n.child_by_field_name("value")
                if name is None or value is None or value.type != "number":
                    return False
                literal.add(node_text(name))
                seen.add(node_text(name))
                continue
            if n.type in ("variable_name", "word"):
                seen.add(node_text(n))
            elif n.type not in LITERAL_ARITH and n.type != "postfix_expression":
                return False
            stack.extend(n.named_children)
    if not seen <= literal or not all(re.search("[a-z]", n) for n in seen):
        return False  # (PATH, IFS, HOME … are upper case: `for ((PATH=0;;))` changes PATH)
    body_text = node_text(body) if body is not None else ""
    return not any(re.search(rf"(?<![$\w{{])\b{re.escape(name)}\b", body_text) for name in seen)


def may_match_dotdot(component: str) -> bool:
    return component.startswith(".") and bool(re.search(r"[*?\[]", component))


# --------------------------------------------------------------------------------------------
# Signatures: a word as a reading records it (gatekeeper.shell.reading)

_EXPANSIONS = frozenset(
    {"simple_expansion", "expansion", "command_substitution", "process_substitution",
     "arithmetic_expansion"}
)  # fmt: skip


def signature(nodes: Sequence[Node]) -> str:
    """The signature of one bash word made of touching nodes: quote removal, expansions as
    :data:`~gatekeeper.shell.reading.EXPANSION`."""
    out: list[str] = []
    for i, n in enumerate(nodes):
        if n.type == "$" and i + 1 < len(nodes) and nodes[i + 1].type == "string":
            continue  # $"…": a translated string reads as a double-quoted one
        out.append(_signature(n))
    return "".join(out)


def _marker(node: Node) -> str:
    return EXPANSION if node.type in _EXPANSIONS else UNKNOWN + node.type


def _signature(node: Node) -> str:
    t = node.type
    if t == "word":
        return unescape_unquoted(node_text(node))[0]
    if t in ("number", "variable_name", "brace_expression"):
        return node_text(node)  # `{1..3}`: literal text to every reader (bash expands it later)
    if t == "raw_string":
        return node_text(node)[1:-1]
    if t == "ansi_c_string":
        decoded = decode_ansi_c(node_text(node)[2:-1])
        return UNKNOWN + "ansi" if decoded is None else decoded
    if t in _EXPANSIONS:
        return EXPANSION
    if t in ("string", "translated_string"):
        return double_quoted(
            node, lambda c: EXPANSION if c.type in _EXPANSIONS else UNKNOWN + c.type
        )[0]
    if t == "concatenation":
        return signature(node.children)
    if node.child_count == 0:
        return unescape_unquoted(node_text(node))[0]
    return UNKNOWN + t


# --------------------------------------------------------------------------------------------
# Text tree-sitter dropped or swallowed

# Tokens read as a whole: what lies inside them is theirs to account for.
_OPAQUE = names(
    "word number string raw_string ansi_c_string translated_string comment heredoc_body "
    "heredoc_start heredoc_end regex extglob_pattern string_content heredoc_content "
    "special_variable_name variable_name test_operator file_descriptor"
)
_UNESCAPED_NEWLINE = re.compile(rb"(?<!\\)(?:\\\\)*\n")


def misread(root: Node) -> str | None:
    """Why tree-sitter's tree does not account for the text the way bash reads it, or None.

    bash reads every character: between two tokens there may be only blanks and newlines,
    and an unquoted word never holds a newline. tree-sitter sometimes skips text it cannot
    place (`>\\ <tab>f` loses the escaped blank) or lets a word run across a newline
    (`wc 1<newline>\\sudo` makes `\\sudo` an argument of wc, where bash runs sudo).
    """
    data = root.text or b""
    for start, end in _gaps(root):
        gap = data[start:end]
        if gap.strip(b" \t\n"):
            return "text tree-sitter did not read: " + repr(gap.decode("utf-8", "replace"))
    stack = [root]
    while stack:
        n = stack.pop()
        if n.type == "word" and _UNESCAPED_NEWLINE.search(n.text or b""):
            return "a word tree-sitter read across a newline"
        if n.type not in _OPAQUE:
            stack.extend(n.children)
    return None


# --------------------------------------------------------------------------------------------
# Where tree-sitter files words and statements that belong elsewhere


def redirect_extra_words(r: Node) -> list[Node]:
    # `rm >/dev/null -rf /`: tree-sitter files "-rf" and "/" under the redirect; bash
    # passes them to rm as arguments.
    if r.type != "file_redirect":
        return []
    dests = [c for c in r.children if c.is_named and c.type != "file_descriptor"]
    groups = touching_groups(dests)
    return [n for g in groups[1:] for n in g if not fd_word(n)]


def redirect_continuations(r: Node) -> list[Node]:
    if r.type != "heredoc_redirect":
        return []
    skip = ("heredoc_start", "heredoc_body", "heredoc_end", "<<", "<<-")
    return [c for c in r.children if c.type not in skip and c.type not in REDIRECTS]


# tree-sitter reads the `0` of `cat 0<f` (and of `>/dev/null 0<&-`) as a word of its own before
# the redirection; bash reads it as the descriptor. These find such digits.
_REDIRECT_OPS = frozenset(
    {"<", ">", ">>", ">|", "<>", "<&", ">&", "<&-", ">&-", "&>", "&>>", "<<", "<<-", "<<<"}
)


def _top(node: Node) -> Node:
    while node.parent is not None:
        node = node.parent
    return node


def fd_word(node: Node) -> bool:
    """Whether ``node`` is digits that bash reads as the descriptor of the next redirection."""
    text = node_text(node)
    if node.type not in ("number", "word") or not (text.isascii() and text.isdigit()):
        return False
    after = _top(node).descendant_for_byte_range(node.end_byte, node.end_byte + 1)
    return (
        after is not None
        and after.start_byte == node.end_byte
        and after.type in _REDIRECT_OPS
        and after.parent is not None
        and after.parent.type in REDIRECTS
        and not any(c.type == "file_descriptor" for c in after.parent.children)
    )


def redirect_fd(r: Node) -> str:
    """The descriptor a redirection names (``2>``), or ``""`` for the operator's default —
    also when tree-sitter put its digits in a node of their own before it."""
    fd = next((c for c in r.children if c.type == "file_descriptor"), None)
    if fd is not None:
        return node_text(fd)
    if r.start_byte == 0:
        return ""
    before = _top(r).descendant_for_byte_range(r.start_byte - 1, r.start_byte)
    while before is not None and before.end_byte == r.start_byte and before.child_count:
        before = before.children[-1] if before.children else None
    if before is not None and before.end_byte == r.start_byte and fd_word(before):
        return node_text(before)
    return ""


def file_descriptors(root: Node) -> set[str]:
    """The descriptors a piece of shell source points at a file (``3<f``, ``>f`` is 1, ``&>f``
    is 1 and 2, ``exec 4<>f`` …): writing to ``/dev/fd/N``, ``/dev/stdout`` or ``/dev/stderr``
    then writes that file, whatever the descriptor was opened for."""
    out: set[str] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        stack.extend(n.children)
        if n.type not in REDIRECTS:
            continue
        ops = [c.type for c in n.children if not c.is_named]
        op = ops[0] if ops else ""
        dests = [c for c in n.named_children if c.type != "file_descriptor"]
        target = node_text(dests[0]) if dests else ""
        fd = redirect_fd(n)
        if op in ("<&", ">&") and ((target.isascii() and target.isdigit()) or target == "-"):
            if fd and target in out:
                out.add(fd)  # a copy of a descriptor that points at a file
            continue
        if op in ("&>", "&>>") or (op == ">&" and target):
            out.update(("1", "2"))
        elif fd:
            out.add(fd)
        elif op.startswith("<"):
            out.add("0")
        elif op.startswith(">"):
            out.add("1")
    return out
