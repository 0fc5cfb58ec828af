"""Words and the code inside them: substitutions, parameter expansions, arithmetic.

A word's value is :func:`gatekeeper.shell.words.word_of`; what bash *runs* while expanding it is
found here. :meth:`Expansions.scan` walks every ``$(…)``, backtick, ``<(…)`` and ``${…}`` below a
node as commands of their own; arithmetic and ``${…}`` operators that evaluate a value as code
are never allowed; here-document bodies with an unquoted delimiter are expanded, so their
substitutions are walked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tree_sitter import Node, Parser

from gatekeeper.shell.parts import Part
from gatekeeper.shell.places import Cwds, Flow, Places
from gatekeeper.shell.reading import UNKNOWN, heredoc_data
from gatekeeper.shell.syntax import (
    LANGUAGE,
    STATEMENTS,
    first_of_type,
    inside_double_quotes,
    only_literal_arithmetic,
    signature,
    touching_groups,
)
from gatekeeper.shell.tables import ARITH_TEST_OPS, HARMLESS_VARS, PARSE_STATE_VARS
from gatekeeper.shell.words import Word, backtick_end, node_text, word_of

MAX_NODES = 20_000  # tree nodes visited per line


def _fixed_non_option(node: Node) -> bool:
    w = word_of(node)
    return w.static and not w.pattern and not w.text.startswith("-")


class Expansions(Places):
    """The word-level half of the walk. The statement-level half (:class:`~gatekeeper.shell.
    walker.Walker`) provides :meth:`stmt`, :meth:`sequence` and :meth:`source`."""

    def __init__(self, root: str, home: str | None) -> None:
        super().__init__(root, home)
        self.nodes = 0  # tree nodes visited: bounded by MAX_NODES
        self.line_vars: set[str] = set()  # variables the line sets (loops, read, assignments …)

    def stmt(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        raise NotImplementedError  # pragma: no cover - Walker's

    def sequence(self, nodes: Iterable[Node], cwds: Cwds, depth: int) -> Flow:
        raise NotImplementedError  # pragma: no cover - Walker's

    def source(self, text: str, cwds: Cwds, depth: int, *, own_reading: bool = True) -> Cwds:
        raise NotImplementedError  # pragma: no cover - Walker's

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
        name = node_text(name_node) if name_node is not None else None
        value = node.child_by_field_name("value")
        if name and (value is not None and not _fixed_non_option(value)):
            self.line_vars.add(name)  # the line chose a value that may be anything
        if name_node is not None and name_node.type != "variable_name":
            name = None  # a[…]=x: an array element
        if standalone and (name is None or name not in HARMLESS_VARS or name in PARSE_STATE_VARS):
            what = (
                f"sets {name}, which changes how bash reads what follows"
                if name in PARSE_STATE_VARS
                else f"sets {name or 'an array element'} for the rest of the line"
            )
            self.emit(Part("bash", node_text(node), "ask", what))
        return name

    @staticmethod
    def assignment_signature(node: Node) -> str:
        name_node = node.child_by_field_name("name")
        if name_node is None or name_node.type != "variable_name":
            return UNKNOWN + "subscript"
        op = next((node_text(c) for c in node.children if c.type in ("=", "+=")), "=")
        value = node.child_by_field_name("value")
        if value is None:
            return f"{node_text(name_node)}{op}"
        if value.type == "array":
            elems = [signature(g) for g in touching_groups(value.named_children)]
            return f"{node_text(name_node)}{op}(" + " ".join(elems) + ")"
        # tree-sitter may split a value into touching pieces under the assignment node
        rest = [c for c in node.children if c.start_byte >= value.start_byte]
        return f"{node_text(name_node)}{op}{signature(rest)}"

    def scan(self, node: Node, cwds: Cwds, depth: int, *, test_context: bool = False) -> None:
        """Find and walk every substitution below ``node`` (in any position)."""
        stack = [node]
        while stack:
            n = stack.pop()
            self.nodes += 1
            if self.nodes > MAX_NODES:
                if not self.exhausted:
                    self.exhausted = True
                    self.unsure("", "command line too large to check")
                return
            t = n.type
            if t == "command_substitution" and n.children and n.children[0].type == "`":
                # bash reads `…` by removing the backslash of \\ \` \$ (and \" inside
                # double quotes), then parses the result: nested backticks run too.
                text = node_text(n)
                if backtick_end(text) != len(text) - 1:
                    # bash ends it at the first unescaped backtick; tree-sitter did not
                    self.unsure(text[:200], "a backtick substitution bash ends elsewhere")
                self.backticks(text[1:-1], inside_double_quotes(n), cwds, depth)
                continue
            if t in ("command_substitution", "process_substitution"):
                inner = list(n.named_children)
                if not inner:
                    self.unsure(node_text(n), "empty substitution")
                self.sequence(inner, cwds, depth + 1)
                continue
            if t in STATEMENTS and n is not node:
                self.stmt(n, cwds, depth + 1)
                continue
            if test_context and t == "raw_string" and re.search(r"[\[`$]", node_text(n)):
                self.unsure(node_text(n), "quoted text a test may evaluate as code")
            if t == "expansion":
                self.parameter_expansion(n, cwds, depth)
            elif t in ("arithmetic_expansion", "subscript"):
                self.arithmetic(n)
            elif test_context and t in ("binary_expression", "unary_expression"):
                self.test_operands(n)
            if t == "ERROR":
                self.unsure(
                    node_text(n)[:200], "bash syntax gatekeeper cannot parse with confidence"
                )
            stack.extend(reversed(n.children))

    def parameter_expansion(self, n: Node, cwds: Cwds, depth: int) -> None:
        """``${…}``: find what bash evaluates as code that tree-sitter leaves as plain text.

        tree-sitter reads the operand of ``${x#…}``, ``${x%…}``, ``${x/…}``, ``${x^…}``,
        ``${x,,…}``, ``${x?…}``, ``${x:=…}`` … as one opaque word, regex or raw string, and
        backticks inside ``${…}`` are never parsed; bash expands them all (inside double quotes
        even between single quotes). Such text is walked again as code and never allowed.
        """
        text = node_text(n)
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
                leaf = node_text(c)
                if re.search(r"`|\$\(|\$\[|[<>]\(", leaf):
                    self.unsure(text[:200], "substitution inside ${…} gatekeeper cannot parse")
                    body = leaf[1:-1] if c.type == "raw_string" else leaf
                    self.source(": " + body, cwds, depth + 1, own_reading=False)
            stack.extend(c.children)

    def arithmetic(self, n: Node) -> None:
        """Arithmetic (``$((…))``, ``$[…]``, array subscripts) evaluates a variable's value as
        an expression, and ``a[$(cmd)]`` inside that value runs cmd: only literals are sure."""
        if n.type == "subscript":
            index = n.child_by_field_name("index")
            if index is None or re.match(r"^([0-9]+|[@*])$", node_text(index)):
                return
            what = index
        else:
            what = n
        if only_literal_arithmetic(what):
            return
        self.unsure(node_text(n)[:200], "arithmetic on values that may hold code")

    def arithmetic_command(self, node: Node) -> None:
        """``(( … ))``: literal arithmetic only, like ``$(( … ))``."""
        if not all(only_literal_arithmetic(c) for c in node.named_children):
            self.unsure(node_text(node)[:200], "arithmetic on values that may hold code")

    def test_operands(self, n: Node) -> None:
        """``[[ a -eq b ]]`` evaluates both sides as arithmetic; ``[[ -v $x ]]`` a subscript."""
        op = n.child_by_field_name("operator")
        if op is None:
            return
        if node_text(op) in ARITH_TEST_OPS or node_text(op) == "-v":
            for c in n.named_children:
                if c.id == op.id:
                    continue
                if node_text(op) == "-v" and c.type == "word" and "[" not in node_text(c):
                    continue
                if not re.match(r"^-?[0-9]+$", node_text(c)):
                    self.unsure(node_text(n)[:200], "a test evaluates values that may hold code")
                    return

    def heredoc_expansions(self, text: str, strip_tabs: bool, cwds: Cwds, depth: int) -> bool:
        """Walk what bash expands in an unquoted here-document body; True if it expands nothing.

        The body is parsed again on its own (tree-sitter leaves ``<<-`` bodies and backticks
        in bodies unparsed): ``$(…)`` and ``${…}`` are walked from the tree, backticks by hand.
        """
        if strip_tabs:
            text = "\n".join(line.lstrip("\t") for line in text.split("\n"))
        text = heredoc_data(text, strip_tabs=False, quoted=False)
        if not re.search(r"[$`]", text):
            return True
        delim = "GATEKEEPER_EOF"
        while delim in text:
            delim += "_"
        data = f"cat <<{delim}\n{text}\n{delim}\n".encode("utf-8", "surrogateescape")
        tree = Parser(LANGUAGE).parse(data)
        body = first_of_type(tree.root_node, "heredoc_body")
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
        self.source(code, cwds, depth + 1, own_reading=False)
