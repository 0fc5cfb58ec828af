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

from tree_sitter import Node

from gatekeeper.shell.commands import (
    arithmetic_evaluation,
    assigned_names,
    exec_option,
    harmless_name,
    invocation,
    non_options,
    sed_script_problem,
    sed_scripts,
    variants,
)
from gatekeeper.shell.expansions import MAX_NODES, Expansions
from gatekeeper.shell.heredocs import heredoc_boundary_problem, heredoc_raw_body
from gatekeeper.shell.parts import Floor, Part, Source
from gatekeeper.shell.places import MAX_CWDS, MAX_PARTS, Cwds, Flow, union
from gatekeeper.shell.reading import (
    COMPOUND,
    UNKNOWN,
    Reading,
    Record,
    Redirection,
    heredoc_data,
    normal_fd,
    redirection,
)
from gatekeeper.shell.syntax import (
    FUNSUB,
    REDIRECTS,
    STATEMENTS,
    UNPARSABLE,
    counting_loop,
    fd_word,
    file_descriptors,
    misread,
    parse,
    parses_cleanly,
    redirect_continuations,
    redirect_extra_words,
    redirect_fd,
    signature,
    touching_groups,
)
from gatekeeper.shell.tables import (
    DIRECTORY_COMMANDS,
    EXEC_OPTIONS,
    FILE_COMMANDS,
    HARMLESS_VARS,
    PARSE_STATE_VARS,
    RESERVED_BEFORE_COMMAND,
    RUNS_A_PROGRAM,
    WRITE_OPS,
    WRITE_OPTIONS,
    parse_state_assignment,
    parse_state_change,
)
from gatekeeper.shell.words import (
    Word,
    expand_heredoc_body,
    is_plain_command_word,
    node_text,
    word_of,
)
from gatekeeper.shell.wrappers import unwrap

MAX_COMMAND_BYTES = 64 * 1024  # longer lines are never parsed: ask
MAX_DEPTH = 24  # nesting of substitutions, re-parsed strings and wrappers
MAX_NESTING = 100  # statements inside statements (keeps the walk far from Python's stack limit)

__all__ = ["MAX_CWDS", "MAX_NODES", "MAX_PARTS", "Cwds", "Flow", "Walker"]


def as_written(words: list[Word], subject: str) -> tuple[str, ...]:
    """The simple command as its line spells it — assignments before it and redirections
    after it included — which is what opencode matches its rules against: a rule that names
    a redirection (``"echo * > out/*": deny``) or an assignment then matches here too. Used
    only as a spelling that can make a decision stricter, never looser."""
    node = words[0].node
    if node is None or node.parent is None or node.parent.type != "command_name":
        return ()  # not the line's own command (one a wrapper runs): its text is the wrapper's
    node = node.parent.parent
    if node is None or node.type != "command":
        return ()
    if node.parent is not None and node.parent.type == "redirected_statement":
        node = node.parent
    text = (node.text or b"").decode("utf-8", "surrogateescape")
    if "\n" in text or text == subject:
        return ()
    collapsed = " ".join(text.split())
    return tuple(dict.fromkeys(t for t in (text, collapsed) if t != subject))


class Walker(Expansions):
    """One walk over one command line (and the strings it runs)."""

    def __init__(self, root: str, home: str | None) -> None:
        super().__init__(root, home)
        self.sources: list[Source] = []
        self._records: list[Record] = []  # the reading of the text being walked
        self.level = 0  # statements being walked, one inside the other
        self.too_deep = False
        self._stderr_to_pipe = False  # the command being walked is followed by |&

    # -- the reading ---------------------------------------------------------------------

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
            self.file_fds |= file_descriptors(root)
            before, moved = len(self.parts), len(self.moved)
            _ok, after = self.stmt(root, cwds, depth)
            new = self.parts[before:]
            if (
                not root.has_error
                and not any(p.permission == "bash" for p in new)
                and not any(p.floor != "allow" for p in new)
            ):
                if len(self.moved) > moved:
                    # Only `cd`: nothing a bash rule decides runs (cd is not matched against
                    # bash rules, as in opencode); a directory outside the project is an
                    # external_directory part of its own. A harness's next call starts there.
                    where = " ".join(dict.fromkeys(self.moved[moved:]))
                    self.emit(Part("directory", where, "allow", "only changes directory"))
                else:
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
            # applied on every call of the function, wherever that is: directory unknown
            self.redirect(r, None, depth)
        body = node.child_by_field_name("body")
        before = len(self._records)
        if body is not None:
            # The body runs where the function is called, not where it is defined.
            self.stmt(body, None, depth + 1)
        fname = node_text(name) if name is not None else ""
        moves = fname in _MOVES_DIRECTORY or any(
            r.words and r.words[0] in _MOVES_DIRECTORY for r in self._records[before:]
        )
        if moves:
            # It may change directory when called, or it takes the name of a command the walk
            # follows (`cd() { …; }`): every later directory is unknown.
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
                elif name not in HARMLESS_VARS and not (
                    keyword == "local" and name is not None and harmless_name(name, _SETTABLE)
                ):
                    # `export PATH=…` changes what every later command is; `local x=1` in a
                    # function is fine, `local PATH=…` is not.
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
                ok, every = ok_r, union(every, all_r)
            elif op == "||":
                ok, every = union(ok, ok_r), union(every, all_r)
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
        variable = node.child_by_field_name("variable") if node.type == "for_statement" else None
        if variable is not None and not _known_values(node):
            self.line_vars.add(node_text(variable))
        if variable is not None and not harmless_name(node_text(variable), _SETTABLE):
            # `for PATH in /tmp/x; do ls; done` runs /tmp/x/ls
            self.unsure(node_text(node)[:200], f"the loop sets {node_text(variable)}")
        for c in node.named_children:
            if c.type in ("variable_assignment", "variable_assignments") and (
                node.type != "c_style_for_statement"
            ):
                # `if PATH=/x; then …` or `while …; do PATH=/x; done`: a standalone assignment
                _, after = self.stmt(c, every, depth)
                every = union(every, after)
            elif c.type in STATEMENTS:
                _, after = self.stmt(c, every, depth)
                every = union(every, after)
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
                every = union(every, after)
            elif op == "||":
                _, after = self.stmt(c, every, depth)
                every = union(every, after)
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
            elif (field_name == "argument" or c.is_named) and not fd_word(c):
                args.append(c)
        for c in node.children:
            if c.type == "file_redirect":
                extra_words = [*extra_words, *redirect_extra_words(c)]
        args.extend(extra_words)
        floor: Floor = "allow"
        notes: list[str] = []
        for a in assigns:
            name = self.assignment(a, cwds, depth, standalone=False)
            value = a.child_by_field_name("value")
            why = parse_state_assignment(
                name or "", word_of(value).text if value is not None else ""
            )
            if name not in HARMLESS_VARS or why is not None:
                floor = "ask"
                notes.append(why or f"sets {name or 'a variable'} for the command")
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
        spellings = variants(words)
        written = as_written(words, subject)
        cmd = posixpath.basename(name.text) if name.static else ""
        if cmd in DIRECTORY_COMMANDS and name.static and not name.pattern:
            if floor != "allow":
                self.emit(Part("bash", subject, floor, "; ".join(notes)))
            return self.change_directory(cmd, words[1:], cwds)
        for why in (
            arithmetic_evaluation(cmd, words[1:]),
            parse_state_change(cmd, words[1:]),
            runs_other_code(cmd, words[1:]),
            option_doubt(cmd, words[1:], self.line_vars),
        ):
            if why is not None:
                floor = "ask"
                notes.append(why)
        for name in assigned_names(cmd, words[1:]):
            self.line_vars.add(name.text)
            if not name.static or not harmless_name(name.text, _SETTABLE):
                floor = "ask"
                notes.append(f"{cmd} sets {name.text}")
        if not (cmd == "[" and floor == "allow"):
            # `[ … ]` only tests (as in opencode, it is not a command the rules decide); its
            # redirections and what it pipes into are, and a `-v` subscript asks.
            self.emit(Part("bash", subject, floor, "; ".join(notes) or None, spellings, written))
        if cmd in FILE_COMMANDS:
            self.path_arguments(cmd, words[1:], cwds)
        self.read_places(cmd, words[1:], cwds)
        if cmd == "tee":
            for w in non_options(words[1:]):
                self.write_target(w, cwds)
        if cmd == "dd":
            for w in words[1:]:
                if w.text.startswith("of="):
                    self.write_target(Word(w.text[3:], w.static, w.pattern, w.node), cwds)
        self.option_writes(cmd, words[1:], cwds)
        return unwrap(self, cmd, words, cwds, depth, stdin_script)

    def shell_string(self, w: Word, cwds: Cwds, depth: int) -> None:
        if not w.static:
            self.unsure(w.text, "shell code that is not a fixed string")
        elif w.pattern:
            # `bash -c 'a'{b,c}` runs what brace expansion makes of it, not the text
            self.unsure(w.text, "shell code bash may expand into other words first")
        self.source(w.text, cwds, depth + 1)

    def inline_source(self, text: str, cwds: Cwds, depth: int, *, subshell: bool = False) -> Flow:
        after = self.source(text, cwds, depth + 1)
        if subshell:
            return cwds, cwds
        return after, union(cwds, after)

    # -- directories and paths --------------------------------------------------------------

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
            copies_fd = dest.static and (
                (dest.text.isascii() and dest.text.isdigit()) or dest.text == "-"
            )
            if op in WRITE_OPS or (op in (">&", ">&-") and not copies_fd):
                self.write_target(dest, cwds)
            elif op in ("<", "<&") and not copies_fd:
                self.read_target(dest, cwds)
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
        fd = redirect_fd(r)
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
        return redirection(fd, op, target)

    # -- words and assignments --------------------------------------------------------------


Handler = Callable[[Walker, Node, Cwds, int], Flow]

# Variables a builtin (read, printf -v …) or a loop may set without asking.
_SETTABLE = HARMLESS_VARS - PARSE_STATE_VARS


def runs_other_code(cmd: str, args: list[Word]) -> str | None:
    """Why an option or script of ``cmd`` makes it run another program, or None."""
    inv = invocation(cmd, args)
    for key, words in ((cmd, inv.global_args), (inv.key, inv.args)):
        options = EXEC_OPTIONS.get(key)
        option = exec_option(key, words, options) if options else None
        if option is not None:
            return f"{key} {option} runs another program"
    if inv.key in RUNS_A_PROGRAM:
        return f"{inv.key} runs a program of its configuration's choosing"
    if cmd == "sed":
        scripts = sed_scripts(args)
        if scripts is None:
            return "sed reads its script from a file gatekeeper cannot see"
        for script in scripts:
            why = sed_script_problem(script.text) if script.static else "a sed script not fixed"
            if why is not None:
                return why
    return None


def option_doubt(cmd: str, args: list[Word], line_vars: set[str]) -> str | None:
    """Why a word of a command whose options write files or run programs may be such an
    option without looking like one here: its value comes from the line itself (a substitution,
    ``"$@"``, a variable the line sets: ``for x in --output=f; do git diff "$x"; done``), or
    brace expansion or a glob can make it start with ``-`` (``{--output=x,}``, ``*`` matching a
    file named ``-e1e …``). A variable from the environment (``$HOME``) is not the line's to
    choose. None for commands without such options."""
    inv = invocation(cmd, args)
    if not (
        inv.key in WRITE_OPTIONS or inv.key in EXEC_OPTIONS or cmd in EXEC_OPTIONS or cmd == "sed"
    ):
        return None
    for w in (*inv.global_args, *inv.args):
        if w.static and w.text == "--":
            break
        if not w.static and _chosen_by_the_line(w.text, line_vars):
            return f"a word of {inv.key} the line itself chooses may be an option"
        if w.pattern and (
            (w.text.startswith("{") and "-" in w.text) or w.text[:1] in ("*", "?", "[")
        ):
            return f"a word of {inv.key} may expand into an option"
    return None


def _known_values(loop: Node) -> bool:
    """Whether every value a `for` loop gives its variable is a fixed word that is no option
    (``for f in a b``); a glob, an expansion or ``-x`` may be anything."""
    values = list(loop.children_by_field_name("value"))
    for v in values:
        w = word_of(v)
        if not w.static or w.pattern or w.text.startswith("-"):
            return False
    return bool(values)


_LINE_CHOSEN = re.compile(r"\$\(|`|[<>]\(|\$[@*0-9#!-]|\$\{[@*0-9#!]|\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _chosen_by_the_line(text: str, line_vars: set[str]) -> bool:
    for m in _LINE_CHOSEN.finditer(text):
        name = m.group(1)
        if name is None or name in line_vars:
            return True
    return False


# Commands after which (or functions named so that) the directory may have moved.
_MOVES_DIRECTORY = frozenset(
    {*DIRECTORY_COMMANDS, "command", "builtin", "source", ".", "eval", "exec", "trap"}
)

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
