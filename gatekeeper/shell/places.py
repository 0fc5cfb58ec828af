"""Places: the directories a line runs in, the files it writes, the paths it names.

:class:`Places` is the part of the walk that knows the project root: it resolves a word to the
absolute paths it may name (``None`` when it cannot be known), turns writes into ``write``
parts (relative inside the root, absolute and ``external_directory`` outside it) and follows
``cd``. The walker (:mod:`gatekeeper.shell.walker`) builds on it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace

from gatekeeper.shell.commands import file_option_targets, invocation, non_options
from gatekeeper.shell.parts import Part
from gatekeeper.shell.syntax import may_match_dotdot
from gatekeeper.shell.tables import (
    DEV_FD,
    FIRST_ARG_NOT_PATH,
    NOT_WRITES,
    READ_OPTIONS,
    WRITE_OPTIONS,
)
from gatekeeper.shell.words import Word

MAX_PARTS = 512
MAX_CWDS = 8

Cwds = frozenset[str] | None  # the directories a part may run in; None: unknown
Flow = tuple[Cwds, Cwds]  # (directories if the statement succeeded, whatever happened)


def normpath(path: str) -> str:
    """``posixpath.normpath``, and a leading ``//`` made ``/`` (POSIX keeps two leading
    slashes as they are; Linux reads ``//etc`` as ``/etc``, and so must the rules)."""
    p = posixpath.normpath(path)
    return "/" + p.lstrip("/") if p.startswith("//") else p


def external_as_opencode(path: str) -> str:
    """opencode's subject for a directory outside the project: ``DIR/*`` (a rule written for
    it, ``"/some/dir/*": deny``, then also catches ``cd /some/dir``)."""
    return path.rstrip("/") + "/*"


class Places:
    """The parts found so far, and what the project root makes of paths."""

    def __init__(self, root: str, home: str | None) -> None:
        self.root = normpath(root) if root else "/"
        self.home = home
        self.parts: list[Part] = []
        self.exhausted = False  # a limit was hit: said once
        self.file_fds: set[str] = set()  # descriptors the line points at files (3<f …)
        self.moved: list[str] = []  # directories a cd went to (for a line that only does that)

    def emit(self, part: Part) -> None:
        if part.permission == "external_directory" and part.subject.startswith("/"):
            part = replace(part, written=(external_as_opencode(part.subject),))
        if len(self.parts) < MAX_PARTS:
            self.parts.append(part)
        elif not self.exhausted:
            self.exhausted = True
            self.parts.append(Part("bash", "", "ask", f"more than {MAX_PARTS} parts: too complex"))

    def unsure(self, subject: str, note: str) -> None:
        self.emit(Part("bash", subject, "ask", note))

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
            return [normpath(text)]
        if cwds is None:
            return None
        return sorted({normpath(posixpath.join(c, text)) for c in cwds})

    def inside_root(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")

    def change_directory(self, cmd: str, args: list[Word], cwds: Cwds) -> Flow:
        if cmd in ("pushd", "popd") and any(not w.static or w.text[:1] in "-+" for w in args):
            # pushd -n (no change), pushd +1 (rotate the stack), popd: not a path we follow
            return None, None
        targets = non_options(args)  # `cd -- -weird` goes to -weird
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
        self.moved.extend(paths)
        new = frozenset(paths)
        return new, union(cwds, new)

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
            paths = non_options(args)
        unless = FIRST_ARG_NOT_PATH.get(cmd)
        if (
            unless is not None
            and paths
            and not any(w.text.partition("=")[0] in unless or w.text[:2] in unless for w in args)
        ):
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

    def read_places(self, cmd: str, args: list[Word], cwds: Cwds) -> None:
        """What any command reads or lists outside the project: a glob's directory
        (``echo ../x/*`` lists it), a file named by an option that reads one
        (``--files0-from=f``), and ``git diff --no-index``'s paths."""
        for i, w in enumerate(args):
            if w.static and w.pattern and re.search(r"[*?\[]", w.text):
                head = re.split(r"[*?\[]", w.text, maxsplit=1)[0]
                if "/" in head:
                    self._outside(Word(head.rsplit("/", 1)[0] or "/", True), cwds, cmd)
            name, eq, value = w.text.partition("=")
            if name in READ_OPTIONS:
                if eq:
                    self._outside(Word(value, w.static, w.pattern, w.node), cwds, cmd)
                elif i + 1 < len(args):
                    self._outside(args[i + 1], cwds, cmd)
        if cmd == "git" and any(w.text == "--no-index" for w in args):
            for w in non_options(args)[1:]:
                self._outside(w, cwds, cmd)

    def _outside(self, w: Word, cwds: Cwds, cmd: str) -> None:
        if w.static and w.text in NOT_WRITES:
            return  # /dev/null and the like
        resolved = self.resolve(w, cwds)
        if resolved is None:
            self.emit(Part("external_directory", w.text, "ask", f"{cmd} on a path not fixed"))
            return
        for p in resolved:
            if not self.inside_root(p):
                self.emit(Part("external_directory", p))

    def read_target(self, w: Word, cwds: Cwds) -> None:
        """A file an input redirection reads (``< ../secret``): outside the root, it asks."""
        if w.static and (w.text in NOT_WRITES or DEV_FD.match(w.text) or w.text == "/dev/stdin"):
            return
        self._outside(w, cwds, "<")

    def write_target(self, w: Word, cwds: Cwds) -> None:
        if w.static and (w.text in NOT_WRITES or DEV_FD.match(w.text)):
            fd = {"/dev/stdout": "1", "/dev/stderr": "2"}.get(w.text, w.text.rsplit("/", 1)[-1])
            if fd in self.file_fds and w.text != "/dev/null":
                # `3<notes.txt >/dev/fd/3` opens notes.txt again, for writing
                self.emit(
                    Part(
                        "write",
                        w.text,
                        "ask",
                        "writes through a descriptor the line opened on a file",
                    )
                )
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
        inv = invocation(cmd, args)
        spec = WRITE_OPTIONS.get(inv.key)
        if spec is None:
            return
        if inv.directory is not None:  # git -C DIR: outputs are relative to DIR
            resolved = self.resolve(inv.directory, cwds)
            cwds = frozenset(resolved) if resolved is not None else None
        for target in file_option_targets(inv.key, spec, inv.args):
            self.write_target(target, cwds)


def union(a: Cwds, b: Cwds) -> Cwds:
    """Directories either way; unknown when either is, or when there are too many."""
    if a is None or b is None:
        return None
    u = a | b
    return u if len(u) <= MAX_CWDS else None
