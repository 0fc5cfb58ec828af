"""The walk: a tree-sitter syntax tree → the parts a policy decides, and gatekeeper's reading.

:class:`Walker` visits statements through a table (:data:`_STATEMENTS`, node type → handler),
so that adding a construct is one handler and one line. It tracks the set of directories a
later part may run in (``cd a; x`` runs ``x`` in ``a`` or, if ``cd`` failed, where it started:
both are checked), and it records, for every text it parses, the :class:`Reading` that the
independent readers must confirm before an allow stands (:mod:`gatekeeper.readers`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence

from tree_sitter import Node, Parser

from gatekeeper.shell.parts import Floor, Part, Source
from gatekeeper.shell.reading import (
    COMPOUND,
    UNKNOWN,
    Reading,
    Record,
    Redirection,
    heredoc_data,
    normal_fd,
)
from gatekeeper.shell.syntax import (
    FUNSUB,
    LANGUAGE,
    REDIRECTS,
    STATEMENTS,
    UNPARSABLE,
    counting_loop,
    first_of_type,
    inside_double_quotes,
    may_match_dotdot,
    misread,
    only_literal_arithmetic,
    parse,
    parses_cleanly,
    signature,
    touching_groups,
)
from gatekeeper.shell.tables import (
    ARITH_TEST_OPS,
    DECLARATIONS,
    DEV_FD,
    DIRECTORY_COMMANDS,
    FILE_COMMANDS,
    FIRST_ARG_NOT_PATH,
    GIT_GLOBAL_WITH_ARG,
    HARMLESS_VARS,
    NOT_WRITES,
    PARSE_STATE_VARS,
    RESERVED_BEFORE_COMMAND,
    SHELLS,
    WATCH_OPTS,
    WRAPPERS,
    WRITE_OPS,
    WRITE_OPTIONS,
    FileOptions,
    parse_state_change,
)
from gatekeeper.shell.words import (
    Word,
    expand_heredoc_body,
    is_plain_command_word,
    node_text,
    word_of,
)

MAX_COMMAND_BYTES = 64 * 1024  # longer lines are never parsed: ask
MAX_DEPTH = 24  # nesting of substitutions, re-parsed strings and wrappers
MAX_NODES = 20_000  # tree nodes visited per line
MAX_PARTS = 512
MAX_NESTING = 100  # statements inside statements (keeps the walk far from Python's stack limit)
MAX_CWDS = 8

Cwds = frozenset[str] | None  # the directories a part may run in; None: unknown
Flow = tuple[Cwds, Cwds]  # (directories if the statement succeeded, whatever happened)


class Walker:
    """One walk over one command line (and the strings it runs)."""

    def __init__(self, root: str, home: str | None) -> None:
        self.root = posixpath.normpath(root) if root else "/"
        self.home = home
        self.parts: list[Part] = []
        self.sources: list[Source] = []
        self._records: list[Record] = []  # the reading of the text being walked
        self.nodes = 0
        self.exhausted = False
        self.level = 0  # statements being walked, one inside the other
        self.too_deep = False
        self._stderr_to_pipe = False  # the command being walked is followed by |&

    # -- emitting ---------------------------------------------------------------------------

    def emit(self, part: Part) -> None:
        if len(self.parts) < MAX_PARTS:
            self.parts.append(part)
        elif not self.exhausted:
            self.exhausted = True
            self.parts.append(Part("bash", "", "ask", f"more than {MAX_PARTS} parts: too complex"))

    def unsure(self, subject: str, note: str) -> None:
        self.emit(Part("bash", subject, "ask", note))

    def record(self, record: Record) -> None:
        self._records.append(record)

    # -- entry points -----------------------------------------------------------------------

    def source(self, text: str, cwds: Cwds, depth: int, *, own_reading: bool = True) -> Cwds:
        """Parse and walk one piece of shell source; returns the directories after it.

        ``own_reading``: the text is one bash will parse on its own (the line, ``bash -c``'s
        string, ``eval``'s words), so it gets a reading of its own for the independent readers
        to confirm; otherwise (backticks) it is part of the text being walked.
        """
        if depth > MAX_DEPTH:
            self.unsure(text[:200], "nested too deeply to check")
            return None
        if len(text.encode("utf-8", "surrogateescape")) > MAX_COMMAND_BYTES:
            self.unsure(text[:200], f"longer than {MAX_COMMAND_BYTES} bytes: not checked")
            return None
        if UNPARSABLE.search(text):
            self.unsure(text[:200], "characters beyond U+3FFFF: not parsed")
            return None
        outer = self._records
        if own_reading:
            self._records = []
        try:
            tree = parse(text.encode("utf-8", "surrogateescape"))
            root = tree.root_node
            if root.has_error:
                self.unsure(text, "bash syntax gatekeeper cannot parse with confidence")
                self.funsubs(text, cwds, depth)
            else:
                problem = misread(root)
                if problem is not None:
                    self.unsure(text[:200], problem)
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
        finally:
            if own_reading:
                self.sources.append(Source(text, Reading(tuple(self._records))))
                self._records = outer
        return after

    def funsubs(self, text: str, cwds: Cwds, depth: int) -> None:
        """Walk bash 5.3's ``${ cmd; }`` and ``${| cmd; }``: they run cmd, tree-sitter fails.

        The body ends at the first ``}`` after which it parses cleanly (else at the last ``}``).
        Only ever adds parts to a line that already asks.
        """
        for m in FUNSUB.finditer(text):
            start = m.end()
            ends = [i for i in range(start, len(text)) if text[i] == "}"]
            if not ends:
                continue
            body = text[start : ends[-1]]
            for e in ends:
                candidate = text[start:e]
                if candidate.strip() and parses_cleanly(candidate):
                    body = candidate
                    break
            if body.strip():
                self.source(body, cwds, depth + 1, own_reading=False)

    # -- statements ---------------------------------------------------------------------------

    def stmt(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        """Walk a statement; return (directories if it succeeded, directories whatever happened)."""
        if self.level >= MAX_NESTING:
            if not self.too_deep:
                self.too_deep = True
                self.unsure(node_text(node)[:200], "nested too deeply to check")
            return None, None
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if not self.exhausted:
                self.exhausted = True
                self.unsure("", "command line too large to check")
            return None, None
        if depth > MAX_DEPTH:
            self.unsure(node_text(node)[:200], "nested too deeply to check")
            return None, None
        self.level += 1
        try:
            handler = _STATEMENTS.get(node.type, Walker.unfamiliar)
            return handler(self, node, cwds, depth)
        finally:
            self.level -= 1

    def unfamiliar(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        # A construct this walker does not know: look inside, never allow.
        self.unsure(node_text(node)[:200], f"unfamiliar shell construct ({node.type})")
        self.record(Record((), (UNKNOWN + node.type,)))
        self.scan(node, cwds, depth)
        return None, None

    def nothing(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        return cwds, cwds

    def error(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        self.scan(node, cwds, depth)
        return None, None

    def block(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        if node.type == "compound_statement" and node.children and node.children[0].type == "((":
            # (( … )): an arithmetic command
            self.record(Record((), ("((",)))
            self.arithmetic_command(node)
            self.scan(node, cwds, depth)
            return cwds, cwds
        return self.sequence(node.children, cwds, depth)

    def pipeline(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        kids = node.children
        for i, c in enumerate(kids):
            if not c.is_named:
                continue
            if i + 1 < len(kids) and kids[i + 1].type == "|&":
                # `a |& b` is `a 2>&1 | b` (bash prints it so): the reading says the same
                body = c.child_by_field_name("body") if c.type == "redirected_statement" else c
                if body is not None and body.type == "command":
                    self._stderr_to_pipe = True
                else:
                    self.record(Record((), (COMPOUND,), (Redirection("2", ">&", "1"),)))
            self.stmt(c, cwds, depth)
            self._stderr_to_pipe = False
        return cwds, cwds

    def subshell(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        self.sequence(node.children, cwds, depth)
        return cwds, cwds

    def negated(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        _ok, every = self.sequence(node.named_children, cwds, depth)
        return every, every

    def command_stmt(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        return self.command(node, [], cwds, depth)

    def function(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        name = node.child_by_field_name("name")
        redirects = [c for c in node.named_children if c.type in REDIRECTS]
        self.record(
            Record(
                (),
                (UNKNOWN + "function", node_text(name) if name is not None else ""),
                tuple(self.redirection(r) for r in redirects),
            )
        )
        for r in redirects:
            # applied on every call of the function: decided as if it ran now
            self.redirect(r, cwds, depth)
        body = node.child_by_field_name("body")
        if body is not None:
            _, after = self.stmt(body, cwds, depth + 1)
            if after != cwds:
                # A function that changes directory makes every later directory unknown.
                return None, None
        return cwds, cwds

    def assignments(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        assigns = [node] if node.type == "variable_assignment" else list(node.named_children)
        self.record(Record(tuple(self.assignment_signature(a) for a in assigns), ()))
        for a in assigns:
            self.assignment(a, cwds, depth, standalone=True)
        return cwds, cwds

    def declaration(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        words = [self.expand(c, cwds, depth) for c in node.children if c.is_named]
        keyword = node_text(node.children[0]) if node.children else node.type
        self.record(
            Record(
                (),
                (
                    keyword,
                    *(
                        self.assignment_signature(c)
                        if c.type == "variable_assignment"
                        else signature([c])
                        for c in node.named_children
                    ),
                ),
            )
        )
        floor: Floor = "allow"
        note: str | None = None
        for c in node.named_children:
            if c.type == "variable_assignment":
                name = self.assignment(c, cwds, depth, standalone=False)
                if name in PARSE_STATE_VARS:
                    floor, note = "ask", f"sets {name}, which changes how bash reads what follows"
                elif name not in HARMLESS_VARS and keyword != "local":
                    # `export PATH=…` changes what every later command is.
                    floor, note = "ask", f"sets {name or 'an array element'}"
        arith = arithmetic_evaluation(keyword, words)
        if arith is not None:
            floor, note = "ask", arith
        subject = " ".join([keyword, *(w.text for w in words)])
        self.emit(Part("bash", subject, floor, note))
        return cwds, cwds

    def test(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        if node.children and node.children[0].type == "[":
            # `[` is an ordinary command to bash: `|`, `&`, `;`, `<`, `>` between `[` and `]`
            # are pipes, lists and redirections, not test operators. Read it as the command
            # `\[ …` (the backslash keeps tree-sitter from its test grammar; bash removes it).
            root = self.as_command(node)
            if root is None:
                self.scan(node, cwds, depth)
                return None, None
            return self.stmt(root, cwds, depth)
        self.record(Record((), ("[[",)))
        self.scan(node, cwds, depth, test_context=True)
        return cwds, cwds

    def as_command(self, node: Node) -> Node | None:
        """A ``[ … ]`` test read again as the ordinary command it is to bash: the text with
        its ``[`` escaped (which keeps tree-sitter from its test grammar; bash removes the
        backslash). None, after an ask, if that does not parse cleanly."""
        tree = parse(("\\" + node_text(node)).encode("utf-8", "surrogateescape"))
        problem = (
            "a [ test gatekeeper cannot parse as bash does"
            if tree.root_node.has_error
            else (misread(tree.root_node))
        )
        if problem is not None:
            self.unsure(node_text(node)[:200], problem)
            return None
        return tree.root_node

    def sequence(self, nodes: Iterable[Node], cwds: Cwds, depth: int) -> Flow:
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
    ) -> Flow:
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

    def list_stmt(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        return self.list_(node, cwds, depth)

    def compound(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        # Bodies of if/while/for/case may run or not, once or many times: every directory
        # they may change to is possible afterwards.
        every = cwds
        if node.type == "c_style_for_statement" and not counting_loop(node):
            self.unsure(node_text(node)[:200], "arithmetic on values that may hold code")
        for c in node.named_children:
            if c.type in ("variable_assignment", "variable_assignments") and (
                node.type != "c_style_for_statement"
            ):
                # `if PATH=/x; then …` or `while …; do PATH=/x; done`: a standalone assignment
                _, after = self.stmt(c, every, depth)
                every = _union(every, after)
            elif c.type in STATEMENTS:
                _, after = self.stmt(c, every, depth)
                every = _union(every, after)
            else:
                self.scan(c, every, depth)
        return every, every

    def redirected(self, node: Node, cwds: Cwds, depth: int) -> Flow:
        body: Node | None = None
        redirects: list[Node] = []
        for i, c in enumerate(node.children):
            if node.field_name_for_child(i) == "body" and body is None:
                body = c
            elif c.is_named:
                redirects.append(c)
        extra_words: list[Node] = []
        continuations: list[Node] = []
        for r in list(redirects):
            extra_words.extend(redirect_extra_words(r))
            continuations.extend(redirect_continuations(r))
            # `cat <<EOF > f`: tree-sitter hangs `> f` inside the here-document's node
            redirects.extend(c for c in r.children if r.type == "heredoc_redirect"
                             and c.type in REDIRECTS)  # fmt: skip
        if body is None:
            self.record(Record((), (), tuple(self.redirection(r) for r in redirects)))
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
    ) -> Flow:
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
        if body.type == "test_command" and body.children and body.children[0].type == "[":
            # `[ … ] > f`: one ordinary command and its redirections
            root = self.as_command(body)
            if root is not None and len(root.named_children) == 1:
                return self.with_redirects(
                    root.named_children[0], redirects, extra_words, cwds, depth
                )
        if redirects:
            self.record(Record((), (COMPOUND,), tuple(self.redirection(r) for r in redirects)))
        ok, every = self.stmt(body, cwds, depth)
        for r in redirects:
            self.redirect(r, cwds, depth)
        if extra_words:
            self.unsure(node_text(body)[:200], "words after a redirection of a compound command")
        return ok, every

    def continue_after(self, nodes: list[Node], ok: Cwds, every: Cwds, depth: int) -> Flow:
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

    # -- simple commands --------------------------------------------------------------------

    def command(
        self,
        node: Node,
        outer_redirects: Sequence[Node],
        cwds: Cwds,
        depth: int,
        extra_words: Sequence[Node] = (),
    ) -> Flow:
        piped = (Redirection("2", ">&", "1"),) if self._stderr_to_pipe else ()
        self._stderr_to_pipe = False  # not for the commands of its substitutions
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
            elif c.type in REDIRECTS:
                redirects.append(c)
            elif field_name == "argument" or c.is_named:
                args.append(c)
        for c in node.children:
            if c.type == "file_redirect":
                extra_words = [*extra_words, *redirect_extra_words(c)]
        args.extend(extra_words)
        floor: Floor = "allow"
        notes: list[str] = []
        for a in assigns:
            name = self.assignment(a, cwds, depth, standalone=False)
            if name not in HARMLESS_VARS:
                floor = "ask"
                notes.append(f"sets {name or 'a variable'} for the command")
        heredoc_script: tuple[str, bool] | None = None
        for r in redirects:
            script = self.redirect(r, cwds, depth)
            if script is not None:
                heredoc_script = script
        if name_node is None or not node_text(name_node):
            # Only assignments and redirections: runs no command.
            self.record(
                Record(
                    tuple(self.assignment_signature(a) for a in assigns),
                    (),
                    tuple(self.redirection(r) for r in redirects),
                )
            )
            if not assigns and not any(r.type == "file_redirect" for r in redirects):
                self.unsure(node_text(node), "no command")
            elif floor != "allow":
                self.emit(Part("bash", node_text(node), floor, "; ".join(notes)))
            elif any(r.type != "file_redirect" for r in redirects):
                self.unsure(node_text(node), "no command")
            return cwds, cwds
        name_inner = name_node.named_children[0] if name_node.named_children else name_node
        # bash passes words in the order they appear, wherever tree-sitter filed them.
        nodes = sorted(
            [name_inner, *(a for a in args if a.type != "comment")], key=lambda n: n.start_byte
        )
        # tree-sitter splits `'r'\m` in two; bash reads touching pieces as one word.
        groups = touching_groups(nodes)
        self.record(
            Record(
                tuple(self.assignment_signature(a) for a in assigns),
                tuple(signature(g) for g in groups),
                tuple(self.redirection(r) for r in redirects) + piped,
            )
        )
        words = [self.expand_group(g, cwds, depth) for g in groups]
        return self.simple(words, floor, notes, cwds, depth, stdin_script=heredoc_script)

    def simple(
        self,
        words: list[Word],
        floor: Floor,
        notes: list[str],
        cwds: Cwds,
        depth: int,
        *,
        stdin_script: tuple[str, bool] | None = None,
    ) -> Flow:
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
            and name.text in RESERVED_BEFORE_COMMAND
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
        for why in (arithmetic_evaluation(cmd, words[1:]), parse_state_change(cmd, words[1:])):
            if why is not None:
                floor = "ask"
                notes.append(why)
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
        self.option_writes(cmd, words[1:], cwds)
        return self.unwrap(cmd, words, cwds, depth, stdin_script)

    def unwrap(
        self,
        cmd: str,
        words: list[Word],
        cwds: Cwds,
        depth: int,
        stdin_script: tuple[str, bool] | None,
    ) -> Flow:
        handler = _UNWRAPPERS.get(cmd)
        if handler is not None:
            return handler(self, words, cwds, depth, stdin_script)
        if cmd == "busybox" and len(words) > 1 and words[1].text in SHELLS:
            return self.shell_invocation(words[1:], cwds, depth, stdin_script)
        spec = WRAPPERS.get(cmd)
        if spec is None:
            return cwds, cwds
        args = words[1:]
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
        self.simple(inner, floor, notes, cwds, depth + 1, stdin_script=stdin_script)
        return cwds, cwds

    def shell_invocation(
        self,
        words: list[Word],
        cwds: Cwds,
        depth: int,
        stdin_script: tuple[str, bool] | None,
    ) -> Flow:
        args = words[1:]
        i = 0
        command_mode = False
        reads_stdin = False
        while i < len(args):
            w = args[i]
            if not w.static:
                self.unsure(" ".join(a.text for a in args), "shell options that are not fixed")
                return cwds, cwds
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
                return cwds, cwds
            self.shell_string(rest[0], cwds, depth)
            return cwds, cwds
        if rest and not reads_stdin:
            return cwds, cwds  # runs a script file: decided by the bash rules on "bash FILE"
        if stdin_script is not None:
            script, static = stdin_script
            if not static:
                self.unsure(script[:200], "shell script fed with expansions in it")
            self.source(script, cwds, depth + 1)
            return cwds, cwds
        self.unsure("", "a shell reading commands from its standard input")
        return cwds, cwds

    def eval_(
        self, words: list[Word], cwds: Cwds, depth: int, _stdin: tuple[str, bool] | None
    ) -> Flow:
        args = words[1:]
        if not all(w.static for w in args):
            self.unsure(" ".join(w.text for w in words), "eval of text that is not fixed")
        if args:
            return self.inline_source(" ".join(w.text for w in args), cwds, depth)
        return cwds, cwds

    def trap(
        self, words: list[Word], cwds: Cwds, depth: int, _stdin: tuple[str, bool] | None
    ) -> Flow:
        code = _non_options(words[1:])
        if code and code[0].text not in ("-", "") and len(code) > 1:
            if not code[0].static:
                self.unsure(" ".join(w.text for w in words), "trap code that is not fixed")
            self.source(code[0].text, cwds, depth + 1)
        return cwds, cwds

    def source_file(
        self, words: list[Word], cwds: Cwds, depth: int, _stdin: tuple[str, bool] | None
    ) -> Flow:
        # Runs a file we cannot see; it may change directory.
        return None, None

    def find(
        self, words: list[Word], cwds: Cwds, depth: int, _stdin: tuple[str, bool] | None
    ) -> Flow:
        args = words[1:]
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
            if t in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(args):
                self.write_target(args[i + 1], cwds)
            i += 1
        return cwds, cwds

    def su(
        self, words: list[Word], cwds: Cwds, depth: int, _stdin: tuple[str, bool] | None
    ) -> Flow:
        args = words[1:]
        for i, w in enumerate(args):
            if w.text in ("-c", "--command") and i + 1 < len(args):
                self.shell_string(args[i + 1], cwds, depth)
            elif w.text.startswith("--command="):
                self.shell_string(Word(w.text[10:], w.static), cwds, depth)
        return cwds, cwds

    def watch(
        self, words: list[Word], cwds: Cwds, depth: int, _stdin: tuple[str, bool] | None
    ) -> Flow:
        inner = WATCH_OPTS.split(words[1:])[0]
        if inner is None:
            self.unsure(" ".join(w.text for w in words), "options of watch not understood")
        elif inner:
            self.inline_source(" ".join(w.text for w in inner), cwds, depth, subshell=True)
        return cwds, cwds

    def shell_string(self, w: Word, cwds: Cwds, depth: int) -> None:
        if not w.static:
            self.unsure(w.text, "shell code that is not a fixed string")
        self.source(w.text, cwds, depth + 1)

    def inline_source(self, text: str, cwds: Cwds, depth: int, *, subshell: bool = False) -> Flow:
        after = self.source(text, cwds, depth + 1)
        if subshell:
            return cwds, cwds
        return after, _union(cwds, after)

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
        if w.pattern and any(may_match_dotdot(c) for c in text.split("/")):
            return None  # `.*` may match `..` (bash before 5.2, dotglob)
        if text.startswith("/"):
            return [posixpath.normpath(text)]
        if cwds is None:
            return None
        return sorted({posixpath.normpath(posixpath.join(c, text)) for c in cwds})

    def inside_root(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")

    def change_directory(self, cmd: str, args: list[Word], cwds: Cwds) -> Flow:
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
        if cmd in FIRST_ARG_NOT_PATH and paths:
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
        if w.static and (w.text in NOT_WRITES or DEV_FD.match(w.text)):
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

    def option_writes(self, cmd: str, args: list[Word], cwds: Cwds) -> None:
        """Files a program writes because an option or operand says so (``sort -o f``)."""
        key = cmd
        if cmd == "git":
            i = 0
            while i < len(args) and args[i].text.startswith("-"):
                opt = args[i].text
                if opt == "-C" and i + 1 < len(args):
                    resolved = self.resolve(args[i + 1], cwds)
                    cwds = frozenset(resolved) if resolved is not None else None
                i += 2 if opt in GIT_GLOBAL_WITH_ARG and "=" not in opt else 1
            if i >= len(args):
                return
            key, args = f"git {args[i].text}", args[i + 1 :]
        else:
            key, args = _program_key(cmd, args)
        spec = WRITE_OPTIONS.get(key)
        if spec is None:
            return
        for target in file_option_targets(key, spec, args):
            self.write_target(target, cwds)

    def redirect(self, r: Node, cwds: Cwds, depth: int) -> tuple[str, bool] | None:
        """Walk one redirection; return a here-document's (text, static) for a shell to run."""
        t = r.type
        if t == "file_redirect":
            ops = [c.type for c in r.children if not c.is_named]
            dests = [c for c in r.children if c.is_named and c.type != "file_descriptor"]
            op = ops[0] if ops else ""
            if not dests:
                return None
            dest = self.expand_group(touching_groups(dests)[0], cwds, depth)
            copies_fd = dest.static and (dest.text.isdigit() or dest.text == "-")
            if op in WRITE_OPS or (op in (">&", ">&-") and not copies_fd):
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
            quoted = start is not None and any(q in node_text(start) for q in "'\"\\")
            strip_tabs = any(c.type == "<<-" for c in r.children)
            text = heredoc_raw_body(r)
            problem = heredoc_boundary_problem(r, text, strip_tabs=strip_tabs, quoted=quoted)
            if problem is not None:
                self.unsure(node_text(r)[:200], problem)
            if quoted:
                return heredoc_data(text, strip_tabs=strip_tabs, quoted=True), True
            static = self.heredoc_expansions(text, strip_tabs, cwds, depth)
            # What the command reads: continuations joined, tabs stripped (<<-), then the
            # backslash escapes of an unquoted body applied.
            joined = heredoc_data(text, strip_tabs=strip_tabs, quoted=False)
            return expand_heredoc_body(joined), static
        self.scan(r, cwds, depth)
        return None

    def redirection(self, r: Node) -> Redirection:
        """How a redirection node is recorded in the reading."""
        fd_node = next((c for c in r.children if c.type == "file_descriptor"), None)
        fd = node_text(fd_node) if fd_node is not None else ""
        if r.type == "heredoc_redirect":
            start = next((c for c in r.children if c.type == "heredoc_start"), None)
            quoted = start is not None and any(q in node_text(start) for q in "'\"\\")
            strip_tabs = any(c.type == "<<-" for c in r.children)
            data = heredoc_data(heredoc_raw_body(r), strip_tabs=strip_tabs, quoted=quoted)
            op = "<<-" if strip_tabs else "<<"
            return Redirection(normal_fd(fd, op), op + ("q" if quoted else ""), data)
        ops = [c.type for c in r.children if not c.is_named]
        op = ops[0] if ops else ""
        dests = [c for c in r.children if c.is_named and c.type != "file_descriptor"]
        target = signature(touching_groups(dests)[0]) if dests else ""
        if op in (">&-", "<&-"):
            op, target = op[:2], "-"
        return Redirection(normal_fd(fd, op), op, target)

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
        name = node_text(name_node) if name_node is not None else None
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
                if _backtick_end(text) != len(text) - 1:
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


Handler = Callable[[Walker, Node, Cwds, int], Flow]
Unwrapper = Callable[[Walker, list[Word], Cwds, int, "tuple[str, bool] | None"], Flow]

# Statement node type → handler. A type not listed is unfamiliar: never allowed.
_STATEMENTS: dict[str, Handler] = {
    "program": Walker.block,
    "compound_statement": Walker.block,
    "do_group": Walker.block,
    "list": Walker.list_stmt,
    "pipeline": Walker.pipeline,
    "subshell": Walker.subshell,
    "negated_command": Walker.negated,
    "redirected_statement": Walker.redirected,
    "command": Walker.command_stmt,
    "if_statement": Walker.compound,
    "elif_clause": Walker.compound,
    "else_clause": Walker.compound,
    "while_statement": Walker.compound,
    "for_statement": Walker.compound,
    "c_style_for_statement": Walker.compound,
    "case_statement": Walker.compound,
    "case_item": Walker.compound,
    "function_definition": Walker.function,
    "variable_assignment": Walker.assignments,
    "variable_assignments": Walker.assignments,
    "declaration_command": Walker.declaration,
    "unset_command": Walker.declaration,
    "test_command": Walker.test,
    "comment": Walker.nothing,
    "heredoc_body": Walker.nothing,
    "heredoc_start": Walker.nothing,
    "heredoc_end": Walker.nothing,
    "ERROR": Walker.error,
}

# Command name → how to find the code it runs (wrappers with options live in tables.WRAPPERS).
_UNWRAPPERS: dict[str, Unwrapper] = {
    **dict.fromkeys(SHELLS, Walker.shell_invocation),
    "eval": Walker.eval_,
    "trap": Walker.trap,
    "source": Walker.source_file,
    ".": Walker.source_file,
    "find": Walker.find,
    "su": Walker.su,
    "watch": Walker.watch,
}


# --------------------------------------------------------------------------------------------
# Helpers on nodes and words


def redirect_extra_words(r: Node) -> list[Node]:
    # `rm >/dev/null -rf /`: tree-sitter files "-rf" and "/" under the redirect; bash
    # passes them to rm as arguments.
    if r.type != "file_redirect":
        return []
    dests = [c for c in r.children if c.is_named and c.type != "file_descriptor"]
    groups = touching_groups(dests)
    return [n for g in groups[1:] for n in g]


def redirect_continuations(r: Node) -> list[Node]:
    if r.type != "heredoc_redirect":
        return []
    skip = ("heredoc_start", "heredoc_body", "heredoc_end", "<<", "<<-")
    return [c for c in r.children if c.type not in skip and c.type not in REDIRECTS]


def heredoc_raw_body(r: Node) -> str:
    """The body of a here-document as it stands in the source, from the start of its first
    line to the start of its delimiter line (tree-sitter's own body node starts after the
    tabs of a ``<<-`` body and ends before those of its delimiter line)."""
    body = next((c for c in r.children if c.type == "heredoc_body"), None)
    end = next((c for c in r.children if c.type == "heredoc_end"), None)
    if body is None:
        return ""
    root = r
    while root.parent is not None:
        root = root.parent
    data = root.text or b""
    start = data.rfind(b"\n", 0, body.start_byte) + 1
    stop = data.rfind(b"\n", 0, end.start_byte) + 1 if end is not None else body.end_byte
    stop = max(stop, start)
    return data[start:stop].decode("utf-8", "surrogateescape")


def heredoc_boundary_problem(r: Node, body: str, *, strip_tabs: bool, quoted: bool) -> str | None:
    """Why bash may end this here-document elsewhere than tree-sitter did, or None.

    bash reads a body line by line, joins a backslash-newline first when the delimiter is
    unquoted, strips leading tabs for ``<<-``, and ends at the first line equal to the
    delimiter (or at the end of the input).
    """
    start = next((c for c in r.children if c.type == "heredoc_start"), None)
    end = next((c for c in r.children if c.type == "heredoc_end"), None)
    if start is None:
        return "a here-document without a delimiter"
    delimiter = _unquote_delimiter(node_text(start)) if quoted else node_text(start)
    if end is None:
        return "a here-document that never ends"
    end_line = node_text(end)
    if (end_line.lstrip("\t") if strip_tabs else end_line) != delimiter:
        return "a here-document whose last line is not its delimiter"
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    logical: list[str] = []
    pending = ""
    for line in lines:
        text = pending + line
        if not quoted and _ends_in_escape(text):
            pending = text[:-1]
            continue
        pending = ""
        logical.append(text)
    if pending:
        return "a backslash-newline joins the here-document's last line with its delimiter"
    for line in logical:
        if (line.lstrip("\t") if strip_tabs else line) == delimiter:
            return "bash ends this here-document at an earlier line"
    return None


def _backtick_end(text: str) -> int:
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


def _ends_in_escape(line: str) -> bool:
    n = len(line) - len(line.rstrip("\\"))
    return n % 2 == 1


def _unquote_delimiter(raw: str) -> str:
    """Quote removal on a here-document delimiter word (bash expands nothing in it)."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(raw):
        ch = raw[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                out.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch == "\\" and i + 1 < len(raw) and raw[i + 1] in '$`"\\':
                out.append(raw[i + 1])
                i += 1
            else:
                out.append(ch)
        elif ch == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 1
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
        i += 1
    return "".join(out)


_SUBCOMMANDS = frozenset({"go", "docker", "pip", "npm", "ruff"})


def _program_key(cmd: str, args: list[Word]) -> tuple[str, list[Word]]:
    """The WRITE_OPTIONS key of a command (``go build``, ``pip install``, ``python -m pytest``)
    and the words after it."""
    if cmd in ("npx", "pnpx", "bunx") and args and not args[0].text.startswith("-"):
        cmd, args = args[0].text, args[1:]
    elif re.fullmatch(r"python[0-9.]*", cmd) and len(args) > 1 and args[0].text == "-m":
        cmd, args = args[1].text, args[2:]
    if cmd in ("pip3", "pip2") or re.fullmatch(r"pip[0-9.]+", cmd):
        cmd = "pip"
    if cmd in _SUBCOMMANDS and args:
        return f"{cmd} {args[0].text}", args[1:]
    return cmd, args


def file_option_targets(key: str, spec: FileOptions, args: Sequence[Word]) -> list[Word]:
    """The words of ``args`` that name a file the program writes (see tables.FileOptions).

    Read the strict way: where an option cluster or an abbreviation may name a writing option,
    it is taken to (one more write to decide, never one less).
    """
    out: list[Word] = []
    operands: list[Word] = []
    in_place = spec.always_in_place
    checks_only = False
    script_given = False
    target_given = False
    creates = key != "tar"  # tar writes its -f archive only when it creates one
    i = 0
    ended = False
    while i < len(args):
        w = args[i]
        t = w.text
        if ended or not w.static or not t.startswith("-") or t == "-":
            if key == "tar" and i == 0 and w.static and re.fullmatch(r"[A-Za-z]+", t):
                # old-style bundled letters: `tar czf out.tgz dir`
                creates = bool(set(t) & set("cruA"))
                if "f" in t and i + 1 < len(args):
                    out.append(args[i + 1])
                    i += 2
                    continue
            operands.append(w)
            i += 1
            continue
        if t == "--":
            ended = True
            i += 1
            continue
        if key == "tar" and (
            (not t.startswith("--") and set(t[1:]) & set("cruA"))
            or t.startswith(("--create", "--append", "--update", "--concatenate"))
        ):
            creates = True
        value, takes_next = _option_value(w, spec.options, spec.getopt)
        target_value, target_next = _option_value(w, spec.target, spec.getopt)
        if target_value is not None or target_next:
            target_given = True
            value, takes_next = target_value, target_next
        if value is not None:
            out.append(value)
        elif takes_next:
            if i + 1 < len(args):
                out.append(args[i + 1])
            i += 2
            continue
        if spec.in_place and _names_option(t, spec.in_place, spec.getopt):
            if spec.always_in_place:
                checks_only = True
            else:
                in_place = True
        if spec.script and _names_option(t, spec.script, spec.getopt):
            script_given = True
            if t in spec.script:
                i += 1  # the script is the next word, not an operand
        i += 1
    if key == "tar" and not creates:
        out = []
    if spec.last_operand and len(operands) > 1 and not target_given:
        out.append(operands[-1])
    if spec.operand is not None and len(operands) > spec.operand:
        out.append(operands[spec.operand])
    if in_place and not checks_only:
        out.extend(operands if (script_given or not spec.script) else operands[1:])
    return out


def _option_value(w: Word, options: frozenset[str], getopt: bool) -> tuple[Word | None, bool]:
    """(the value ``w`` gives one of ``options`` itself, whether the value is the next word)."""
    t = w.text
    name, eq, value = t.partition("=")
    if name in options or (getopt and _abbreviates(name, options)):
        if eq:
            return Word(value, w.static, w.pattern, w.node), False
        return None, True
    if t.startswith("--"):
        return None, False
    for opt in options:
        if len(opt) != 2:
            continue
        if t.startswith(opt) and len(t) > 2:
            return Word(t[2:], w.static, w.pattern, w.node), False  # -oFILE
        if getopt and opt[1] in t[2:]:
            rest = t[t.index(opt[1], 1) + 1 :]  # a cluster: -no FILE, -noFILE
            if rest:
                return Word(rest, w.static, w.pattern, w.node), False
            return None, True
    return None, False


def _names_option(t: str, options: frozenset[str], getopt: bool) -> bool:
    name = t.partition("=")[0]
    if name in options or (getopt and _abbreviates(name, options)):
        return True
    if t.startswith("--") or not getopt:
        return any(len(o) == 2 and t.startswith(o) for o in options)
    return any(len(o) == 2 and o[1] in t[1:] for o in options)


def _abbreviates(name: str, options: frozenset[str]) -> bool:
    # getopt_long and git accept an unambiguous prefix of a long option: `--out=f`.
    return name.startswith("--") and len(name) > 3 and any(o.startswith(name) for o in options)


def arithmetic_evaluation(cmd: str, args: Sequence[Word]) -> str | None:
    """Why a builtin may run code hidden in a value, or None.

    bash evaluates array subscripts and integer values as arithmetic, and arithmetic runs
    command substitutions inside the value: ``let 'x=a[$(rm -rf ~)]'`` runs rm. Checked with
    real bash: let, declare -i, a declared or printf -v'd name with a subscript, test -v with a
    subscript, and the builtins that assign to a name they are given (read, mapfile, getopts,
    wait -p, printf -v, unset, …).
    """

    def subscripted(w: Word) -> bool:
        return not w.static or "[" in w.text

    if cmd == "let":
        return "let evaluates arithmetic, and a value can carry code"
    if cmd in DECLARATIONS:
        nameref = False
        for w in args:
            if w.text.startswith(("-", "+")):
                if "i" in w.text[1:]:
                    return f"{cmd} -i evaluates values as arithmetic, which can carry code"
                nameref = nameref or "n" in w.text[1:]
                continue
            name, _eq, value = w.text.partition("=")  # NAME, NAME=value, or NAME[sub]=value
            if any(ch in name for ch in "[$`"):
                return f"{cmd} with a subscript or a name that is not fixed can run code"
            if nameref and (not w.static or "[" in value):
                # a nameref to `a[$(cmd)]` runs cmd each time it is read
                return f"{cmd} -n names a subscript or a name that is not fixed"
        return None
    if cmd in _NAME_TAKERS:
        if any(subscripted(w) for w in args if not w.text.startswith("-") or not w.static):
            return f"{cmd} with a subscript or a name that is not fixed can run code"
        return None
    if cmd == "printf":
        texts = [w.text for w in args]
        if "-v" in texts:
            i = texts.index("-v")
            if i + 1 < len(args) and subscripted(args[i + 1]):
                return "printf -v into a subscript or a name that is not fixed can run code"
        return None
    if cmd in ("test", "[") and any(w.text == "-v" for w in args):
        operands = [w for w in args if w.text not in ("-v", "]")]
        if any(subscripted(w) for w in operands):
            return "test -v with a subscript can run code"
    return None


# Builtins whose operands are variable names bash may evaluate with a subscript (read and
# unset do, checked with bash 5.2; the others are kept for safety: a subscripted name there
# is rare).
_NAME_TAKERS = frozenset({"read", "unset", "mapfile", "readarray", "getopts", "wait"})


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
