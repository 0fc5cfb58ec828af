"""What known commands do with their words: pure functions over :class:`Word` lists.

* :func:`file_option_targets` — the files a program writes because an option or operand says so
  (the table is :data:`gatekeeper.shell.tables.WRITE_OPTIONS`);
* :func:`arithmetic_evaluation` — builtins that evaluate a value as arithmetic, which runs code;
* :func:`non_options`, :func:`variants` — operands, and normalised spellings of a subject.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gatekeeper.shell.tables import DECLARATIONS, GIT_GLOBAL_WITH_ARG, FileOptions
from gatekeeper.shell.words import Word

_SUBCOMMANDS = frozenset({"go", "docker", "pip", "npm", "ruff"})


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command as the option tables see it: ``key`` (``sort``, ``git diff``, ``pip
    install``), the words after it, and for git the global options before the subcommand and
    the directory ``-C`` names (where its relative outputs go)."""

    key: str
    args: list[Word]
    global_args: list[Word]
    directory: Word | None = None


def invocation(cmd: str, args: list[Word]) -> Invocation:
    """See :class:`Invocation`."""
    if cmd == "git":
        i = 0
        directory: Word | None = None
        while i < len(args) and args[i].text.startswith("-"):
            opt = args[i].text
            if opt == "-C" and i + 1 < len(args):
                directory = args[i + 1]
            i += 2 if opt in GIT_GLOBAL_WITH_ARG and "=" not in opt else 1
        if i >= len(args):
            return Invocation("git", [], args)
        return Invocation(f"git {args[i].text}", args[i + 1 :], args[:i], directory)
    key, rest = program_key(cmd, args)
    return Invocation(key, rest, [])


def program_key(cmd: str, args: list[Word]) -> tuple[str, list[Word]]:
    """The table key of a command (``go build``, ``pip install``, ``python -m pytest``) and
    the words after it."""
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
    return name.startswith("--") and len(name) > 2 and any(o.startswith(name) for o in options)


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


def non_options(words: Sequence[Word]) -> list[Word]:
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


def variants(words: Sequence[Word]) -> tuple[str, ...]:
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
# Builtins that set a variable they are given by name


def assigned_names(cmd: str, args: Sequence[Word]) -> list[Word]:
    """The variable names a builtin assigns to: ``read NAME``, ``printf -v NAME``, …"""
    if cmd == "printf":
        for i, w in enumerate(args):
            if w.text == "--" or not w.text.startswith("-"):
                break
            if w.text == "-v" and i + 1 < len(args):
                return [args[i + 1]]
            if w.text.startswith("-v"):  # -vNAME: the name attached
                return [Word(w.text[2:], w.static, w.pattern, w.node)]
        return []
    if cmd == "wait":
        texts = [w.text for w in args]
        return [args[texts.index("-p") + 1]] if "-p" in texts[:-1] else []
    if cmd == "getopts":
        return non_options(args)[1:2]
    spec = _NAME_OPTIONS.get(cmd)
    if spec is None:
        return []
    with_arg, names_option = spec
    out: list[Word] = []
    operands: list[Word] = []
    i = 0
    while i < len(args):
        t = args[i].text
        if t.startswith("-") and t != "-" and args[i].static and not operands:
            if t in with_arg or t == names_option:
                if t == names_option and i + 1 < len(args):
                    out.append(args[i + 1])
                i += 2
                continue
            i += 1
            continue
        operands.append(args[i])
        i += 1
    if cmd in ("mapfile", "readarray"):
        return out + operands[-1:]
    return out + operands


# options that take a value, and the option whose value is a name (read -a NAME)
_NAME_OPTIONS: dict[str, tuple[frozenset[str], str]] = {
    "read": (frozenset({"-d", "-i", "-n", "-N", "-p", "-t", "-u"}), "-a"),
    "mapfile": (frozenset({"-d", "-n", "-O", "-s", "-u", "-C", "-c"}), ""),
    "readarray": (frozenset({"-d", "-n", "-O", "-s", "-u", "-C", "-c"}), ""),
}

# Lower-case variables that programs still read from the environment.
_LOWERCASE_ENV = frozenset(
    {"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy", "auto_resume", "histchars"}
)


def harmless_name(name: str, harmless: frozenset[str]) -> bool:
    """A variable a builtin or a loop may set without asking: one of ``harmless``, or a
    lower-case name bash and programs do not read (their variables are upper case)."""
    if name in harmless:
        return True
    return bool(re.fullmatch(r"[a-z_][a-z0-9_]*", name)) and name not in _LOWERCASE_ENV


# --------------------------------------------------------------------------------------------
# Options that run another program, and sed scripts that do


def exec_option(key: str, args: Sequence[Word], options: frozenset[str]) -> str | None:
    """The option of ``args`` that makes the program run another one (``sort
    --compress-program=x``), or None. Abbreviated long options count, clustered short ones too."""
    for w in args:
        t = w.text
        if t == "--":
            break
        name = t.partition("=")[0]
        if name in options:
            return name
        if name.startswith("--") and len(name) > 2 and any(o.startswith(name) for o in options):
            return name
        if not name.startswith("--") and name.startswith("-") and len(name) > 2:
            letters = {o[1] for o in options if len(o) == 2}
            if any(ch in letters for ch in name[1:]):
                return name
    return None


def sed_script_problem(script: str) -> str | None:
    """Why a sed script runs a command or writes a file, or None.

    A small reader of GNU sed's script language: addresses (``N``, ``$``, ``/re/``, ``\\cREc``,
    ``first~step``, ``addr,+N``, ``addr,~N``), ``!``, blocks, and every command with its own
    argument syntax, so that ``e`` (run a command), ``w``/``W`` (write a file) and the ``e`` and
    ``w`` flags of ``s`` are found wherever they stand. What it cannot read is a problem too.
    """
    i, n = 0, len(script)

    def delimited(pos: int) -> int | None:
        """The index after the closing delimiter of a part that starts at ``pos``."""
        delim = script[pos] if pos < n else ""
        if not delim or delim in "\\\n":
            return None
        j = pos + 1
        while j < n and script[j] != delim:
            if script[j] == "\\":
                j += 1
            elif script[j] == "\n":
                return None
            j += 1
        return j if j < n else None

    def address(pos: int) -> int | None:
        if pos < n and script[pos] in "+~":  # GNU's addr,+N and addr,~N
            pos += 1
        if pos < n and script[pos].isdigit():
            while pos < n and (script[pos].isdigit() or script[pos] == "~"):
                pos += 1
            return pos
        if pos < n and script[pos] == "$":
            return pos + 1
        if pos < n and script[pos] in "/\\":
            start = pos + 1 if script[pos] == "\\" else pos
            end = delimited(start)
            if end is None:
                return None
            pos = end + 1
            while pos < n and script[pos] in "IM":
                pos += 1
            return pos
        return pos

    while i < n:
        while i < n and script[i] in " \t\n;}":
            i += 1
        if i >= n:
            break
        if script[i] == "#":
            while i < n and script[i] != "\n":
                i += 1
            continue
        after = address(i)
        if after is None:
            return "a sed script gatekeeper cannot read"
        i = after
        while i < n and script[i] in " \t":
            i += 1
        if i < n and script[i] == ",":
            after = address(i + 1)
            if after is None:
                return "a sed script gatekeeper cannot read"
            i = after
        while i < n and script[i] in " \t!":
            i += 1
        if i >= n:
            return "a sed script gatekeeper cannot read"
        cmd = script[i]
        i += 1
        if cmd in "ewW":
            return f"the sed script runs a command or writes a file ({cmd})"
        if cmd in "{=dDgGhHnNpPxzF":
            continue
        if cmd in "rRaicbtT:qQlLv":
            # an argument to the end of the line (a/i/c text may continue after `\`)
            while i < n and script[i] != "\n":
                if script[i] == "\\":
                    i += 1
                elif script[i] == ";" and cmd in "btTqQlLv":
                    break
                i += 1
            continue
        if cmd in "sy":
            first = delimited(i)
            second = delimited(first) if first is not None else None
            if second is None:
                return "a sed script gatekeeper cannot read"
            i = second + 1
            if cmd == "s":
                flags = ""
                while i < n and (script[i].isalnum()):
                    flags += script[i]
                    i += 1
                    if flags.endswith("w"):
                        break
                if "e" in flags or "w" in flags:
                    return "the sed script runs a command or writes a file (s///e, s///w)"
                if set(flags) - set("gpiImM0123456789"):
                    return "a sed script gatekeeper cannot read"
            continue
        return "a sed script gatekeeper cannot read"
    return None


def sed_scripts(args: Sequence[Word]) -> list[Word] | None:
    """The script words of a sed command line: the ``-e``/``--expression`` values (also
    clustered, ``-ne'…'``, and abbreviated, ``--ex=…``), else the first operand. None when
    the script comes from a file (``-f``, ``--file``): it cannot be seen."""
    scripts: list[Word] = []
    operands: list[Word] = []
    i = 0
    while i < len(args):
        w = args[i]
        t = w.text
        if t.startswith("--") and len(t) > 2:
            name, eq, value = t.partition("=")
            if "--file".startswith(name):
                return None
            if "--expression".startswith(name) and len(name) > 2:
                if eq:
                    scripts.append(Word(value, w.static, False, w.node))
                elif i + 1 < len(args):
                    scripts.append(args[i + 1])
                    i += 1
            i += 1
            continue
        if t.startswith("-") and len(t) > 1:
            for j, ch in enumerate(t[1:], 1):
                if ch == "f":
                    return None
                if ch in "el":  # the rest of the word, or the next word, is its value
                    given = Word(t[j + 1 :], w.static, False, w.node)
                    if not given.text and i + 1 < len(args):
                        given = args[i + 1]
                        i += 1
                    if ch == "e":
                        scripts.append(given)
                    break
                if ch == "i":
                    break  # -iSUFFIX: the rest is the backup suffix
            i += 1
            continue
        operands.append(w)
        i += 1
    return scripts or operands[:1]
