"""Commands that run other code: wrappers, shells, ``eval``, ``trap``, ``find -exec`` …

:func:`unwrap` finds what a command runs and walks it as a part of its own: wrappers with options
(``sudo``, ``env``, ``xargs`` …, described in :data:`gatekeeper.shell.tables.WRAPPERS`) and the
commands with a handler in :data:`UNWRAPPERS` (shells and their ``-c`` strings, ``eval``,
``trap``, ``source``, ``find``, ``su``, ``watch``). Adding one is a handler and a table line.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from gatekeeper.shell.commands import non_options
from gatekeeper.shell.parts import Floor, Part
from gatekeeper.shell.tables import (
    BASH_ONLY,
    HARMLESS_VARS,
    SHELL_OPTIONS_WITH_ARG,
    SHELLS,
    WATCH_OPTS,
    WRAPPERS,
    parse_state_assignment,
    shell_option_problem,
)
from gatekeeper.shell.words import Word

if TYPE_CHECKING:
    from gatekeeper.shell.walker import Cwds, Flow, Walker

Stdin = tuple[str, bool] | None  # a here-document or here-string fed to the command: (text, static)


def unwrap(
    walker: Walker,
    cmd: str,
    words: list[Word],
    cwds: Cwds,
    depth: int,
    stdin_script: Stdin,
) -> Flow:
    """Walk what ``cmd`` runs, if it runs something (see the module doc)."""
    handler = UNWRAPPERS.get(cmd)
    if handler is not None:
        return handler(walker, words, cwds, depth, stdin_script)
    if cmd == "busybox" and len(words) > 1 and words[1].text in SHELLS:
        return shell_invocation(walker, words[1:], cwds, depth, stdin_script)
    spec = WRAPPERS.get(cmd)
    if spec is None:
        return cwds, cwds
    args = words[1:]
    inner, assigns, dynamic_dir = spec.split(args)
    if inner is None:
        walker.unsure(
            " ".join(w.text for w in words),
            f"cannot tell which command {cmd} runs: options not understood",
        )
        return None, None
    floor: Floor = "allow"
    notes: list[str] = []
    for a in assigns:
        var, _eq, value = a.text.partition("=")
        why = parse_state_assignment(var, value)
        if var not in HARMLESS_VARS or why is not None:
            floor = "ask"
            notes.append(why or f"sets {var} for the command")
    if cmd == "env" and dynamic_dir:
        floor = "ask"
        notes.append("env changes directory")
    if cmd == "env" and any(
        w.text in ("-S", "--split-string") or w.text.startswith(("-S", "--split-string="))
        for w in args
    ):
        walker.unsure(" ".join(w.text for w in words), "env -S splits a string into a command")
    if not inner:
        if cmd == "xargs":
            inner = [Word("echo", True)]
        else:
            if floor != "allow":
                walker.emit(Part("bash", " ".join(w.text for w in words), floor, "; ".join(notes)))
            return cwds, cwds
    flow = walker.simple(inner, floor, notes, cwds, depth + 1, stdin_script=stdin_script)
    if cmd in ("command", "builtin"):
        return flow  # the inner command runs in this shell: `command cd ..` moves it
    return cwds, cwds


def shell_invocation(
    walker: Walker,
    words: list[Word],
    cwds: Cwds,
    depth: int,
    stdin_script: Stdin,
) -> Flow:
    args = words[1:]
    i = 0
    command_mode = False
    reads_stdin = False
    while i < len(args):
        w = args[i]
        if not w.static:
            walker.unsure(" ".join(a.text for a in args), "shell options that are not fixed")
            return cwds, cwds
        t = w.text
        if t in {"--", "-"}:
            i += 1
            break
        if not (len(t) > 1 and t[0] in "-+"):
            break
        why = shell_option_problem(t, args[i + 1].text if i + 1 < len(args) else "")
        if why is not None:
            # -O extglob, -o posix, -k, -i, -l, --rcfile …: the shell would read or run its
            # script otherwise than every reader of it here (or run startup files first).
            walker.unsure(" ".join(a.text for a in words), why)
        if not t.startswith("--"):
            command_mode = command_mode or "c" in t[1:]
            reads_stdin = reads_stdin or "s" in t[1:]
        i += 2 if t in SHELL_OPTIONS_WITH_ARG or (t[1:2] != "-" and set(t[1:]) & set("oO")) else 1
    rest = args[i:]
    shell = posixpath.basename(words[0].text)
    if command_mode:
        if not rest:
            walker.unsure("", "shell -c without a command")
            return cwds, cwds
        other_shell(walker, shell, rest[0].text)
        walker.shell_string(rest[0], cwds, depth)
        return cwds, cwds
    if rest and not reads_stdin:
        return cwds, cwds  # runs a script file: decided by the bash rules on "bash FILE"
    if stdin_script is not None:
        script, static = stdin_script
        if not static:
            walker.unsure(script[:200], "shell script fed with expansions in it")
        other_shell(walker, shell, script)
        walker.source(script, cwds, depth + 1)
        return cwds, cwds
    walker.unsure("", "a shell reading commands from its standard input")
    return cwds, cwds


def other_shell(walker: Walker, shell: str, script: str) -> None:
    """A shell other than bash (``sh`` is dash on Debian) reads its script by its own rules:
    every reader here reads bash's. Where the script holds syntax the two read otherwise, ask."""
    if shell != "bash" and BASH_ONLY.search(script):
        walker.unsure(script[:200], f"{shell} may read this script otherwise than bash does")


def eval_(walker: Walker, words: list[Word], cwds: Cwds, depth: int, _stdin: Stdin) -> Flow:
    args = words[1:]
    if not all(w.static for w in args):
        walker.unsure(" ".join(w.text for w in words), "eval of text that is not fixed")
    elif any(w.pattern for w in args):
        walker.unsure(" ".join(w.text for w in words), "eval of words bash may expand first")
    if args:
        return walker.inline_source(" ".join(w.text for w in args), cwds, depth)
    return cwds, cwds


def trap(walker: Walker, words: list[Word], cwds: Cwds, depth: int, _stdin: Stdin) -> Flow:
    code = non_options(words[1:])
    if code and code[0].text not in ("-", "") and len(code) > 1:
        if not code[0].static:
            walker.unsure(" ".join(w.text for w in words), "trap code that is not fixed")
        walker.source(code[0].text, cwds, depth + 1)
    return cwds, cwds


def source_file(walker: Walker, words: list[Word], cwds: Cwds, depth: int, _stdin: Stdin) -> Flow:
    # Runs a file we cannot see; it may change directory.
    return None, None


def find(walker: Walker, words: list[Word], cwds: Cwds, depth: int, _stdin: Stdin) -> Flow:
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
                walker.unsure("find " + " ".join(a.text for a in args), "find -exec without ; or +")
            if inner:
                # -execdir runs in each file's directory: the directory is unknown.
                where = None if t in ("-execdir", "-okdir") else cwds
                walker.simple(list(inner), "allow", [], where, depth + 1)
            i = j + 1
            continue
        if t in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(args):
            walker.write_target(args[i + 1], cwds)
        i += 1
    return cwds, cwds


def su(walker: Walker, words: list[Word], cwds: Cwds, depth: int, _stdin: Stdin) -> Flow:
    args = words[1:]
    for i, w in enumerate(args):
        if w.text in ("-c", "--command") and i + 1 < len(args):
            walker.shell_string(args[i + 1], cwds, depth)
        elif w.text.startswith("--command="):
            walker.shell_string(Word(w.text[10:], w.static), cwds, depth)
    return cwds, cwds


def watch(walker: Walker, words: list[Word], cwds: Cwds, depth: int, _stdin: Stdin) -> Flow:
    inner = WATCH_OPTS.split(words[1:])[0]
    if inner is None:
        walker.unsure(" ".join(w.text for w in words), "options of watch not understood")
    elif inner:
        walker.inline_source(" ".join(w.text for w in inner), cwds, depth, subshell=True)
    return cwds, cwds


Unwrapper = Callable[["Walker", list[Word], "Cwds", int, Stdin], "Flow"]

UNWRAPPERS: dict[str, Unwrapper] = {
    **dict.fromkeys(SHELLS, shell_invocation),
    "eval": eval_,
    "trap": trap,
    "source": source_file,
    ".": source_file,
    "find": find,
    "su": su,
    "watch": watch,
}
