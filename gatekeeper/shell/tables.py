"""The tables the walker consults: data, so that adding a command is a one-line change.

* :data:`HARMLESS_VARS` — ``VAR=value`` prefixes that cannot change what a command does;
* :data:`DIRECTORY_COMMANDS`, :data:`FILE_COMMANDS`, :data:`SHELLS` — commands read specially;
* :data:`WRAPPERS` — commands that run another command, and how to find it among their options;
* :data:`WRITE_OPTIONS` — program options that write a file (``sort -o``, ``git diff --output``);
* :data:`PARSE_STATE` — commands and variables that change how bash reads the rest of the input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gatekeeper.shell.words import Word


def names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Leading VAR=value assignments that cannot change what a command does in a harmful way.
# (LANG and LC_* are harmless as a prefix of one command; standalone, they change how bash
# reads the rest of the line: see PARSE_STATE_VARS.)
HARMLESS_VARS = names(
    "CI NODE_ENV RUST_LOG RUST_BACKTRACE DEBUG FORCE_COLOR NO_COLOR CLICOLOR "
    "CLICOLOR_FORCE COLUMNS LINES TERM LANG LANGUAGE LC_ALL LC_CTYPE LC_MESSAGES "
    "LC_COLLATE LC_NUMERIC LC_TIME TZ PYTHONUNBUFFERED PYTHONDONTWRITEBYTECODE "
    "PYTHONHASHSEED VERBOSE CARGO_TERM_COLOR GOOS GOARCH "
    "CGO_ENABLED DOTNET_CLI_TELEMETRY_OPTOUT NEXT_TELEMETRY_DISABLED HUSKY "
    "NPM_CONFIG_LOGLEVEL"
)
# Variables whose value changes how bash reads the input that follows: the locale decides
# which bytes are one character (in some multi-byte locales a character's second byte is a
# backslash or a backtick), POSIXLY_CORRECT turns on posix mode. Set for the rest of the line
# (standalone, export, declare …), they are never harmless.
PARSE_STATE_VARS = names("LANG LC_ALL LC_CTYPE LC_COLLATE POSIXLY_CORRECT BASH_COMPAT")

_READABLE_LOCALE = re.compile(r"^(|C|POSIX|[A-Za-z_@.-]*\.(?i:utf-?8)(@[A-Za-z0-9_-]+)?)$")


def parse_state_assignment(name: str, value: str | None) -> str | None:
    """Why ``NAME=value`` before a command changes how what it runs is read, or None.

    As the prefix of one command a locale is harmless — unless that command is itself a shell
    (or runs one) that then reads its script in a multi-byte locale such as Big5, where a
    character's second byte can be a backslash: any locale that is not UTF-8 or C asks.
    ``POSIXLY_CORRECT`` and ``BASH_COMPAT`` change how a shell parses at all.
    """
    if name in ("POSIXLY_CORRECT", "BASH_COMPAT"):
        return f"{name} changes how a shell reads its script"
    if name in PARSE_STATE_VARS and (value is None or not _READABLE_LOCALE.match(value)):
        return f"{name}={value or '…'} may make bytes read as other characters"
    return None


# Syntax bash reads and a POSIX sh (dash) does not, or reads otherwise: a script for `sh -c`
# that holds any of it is not read by sh the way every reader here read it.
BASH_ONLY = re.compile(
    r"\$'|\$\"|\[\[|\(\(|<\(|>\(|&>|\|&|;;&|;&|<<<|\$\{[^}]*[/^,@:]|\{[^\s{}]*,[^\s{}]*\}"
    r"|\{[^\s{}]*\.\.[^\s{}]*\}|\b(?:function|select|coproc|source|declare|typeset|shopt|let"
    r"|time)\b|\becho\b.*\\|`[^`]*\\"
)

# Not matched against bash rules: they only change the directory (as opencode treats them).
DIRECTORY_COMMANDS = frozenset({"cd", "pushd", "popd"})
# Commands whose non-option arguments are paths checked against external_directory.
FILE_COMMANDS = names(
    "rm rmdir cp mv mkdir touch chmod chown chgrp cat ln truncate shred head tail less "
    "more unlink install tee ls stat file find dd "
    # readers: what they print is a file's content
    "grep egrep fgrep rg sed awk jq yq sort uniq cut paste comm join diff cmp wc nl tac od xxd "
    "hexdump strings base64 md5sum sha1sum sha256sum sha512sum cksum du tree realpath readlink "
    "iconv column fold fmt pr split csplit source ."
)
# Whose first operand is not a path: a mode, an owner, or a pattern or program — unless one of
# these options gives that instead (then every operand is a path).
FIRST_ARG_NOT_PATH: dict[str, frozenset[str]] = {
    "chmod": frozenset(),
    "chown": frozenset(),
    "chgrp": frozenset(),
    "grep": names("-e --regexp -f --file"),
    "egrep": names("-e --regexp -f --file"),
    "fgrep": names("-e --regexp -f --file"),
    "rg": names("-e --regexp -f --file"),
    "sed": names("-e --expression -f --file"),
    "awk": names("-f --file"),
    "jq": names("-f --from-file"),
    "yq": frozenset(),
}
# Options whose value is a file the program reads (a list of names, patterns …).
READ_OPTIONS = names("--files0-from --files-from --arg-file --exclude-from --include-from -T -X")
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh", "mksh", "ash", "yash", "posh"})
# Places writing to which is not a file write.
NOT_WRITES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
DEV_FD = re.compile(r"^/dev/fd/[0-9]+$")
WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})
# Reserved words after which bash reads a command (a misparse leaves them as command names).
RESERVED_BEFORE_COMMAND = names("{ ! then do else elif if while until")
ARITH_TEST_OPS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
DECLARATIONS = frozenset({"declare", "typeset", "local", "export", "readonly"})


# --------------------------------------------------------------------------------------------
# Commands that change how bash reads what follows them


def parse_state_change(cmd: str, args: Sequence[Word]) -> str | None:
    """Why ``cmd args`` changes how bash reads the rest of the input, or None.

    ``bash -c`` reads and runs its text one command at a time, so a ``shopt -s extglob`` or an
    alias on one line changes how the next line is parsed — and every independent reading of
    the line, bash's own ``--pretty-print`` included, read it before that happened.
    """
    texts = [w.text if w.static else "$" for w in args]
    if cmd == "shopt":
        if any(t.startswith("-") and set(t[1:]) & set("suo") for t in texts):
            return "shopt changes how bash reads the rest of the input"
        return None
    if cmd in ("alias", "unalias"):
        return f"{cmd} changes what later command words mean"
    if cmd == "enable":
        return "enable loads or removes builtins"
    if cmd == "set":
        i = 0
        while i < len(texts):
            t = texts[i]
            if t == "--" or not t.startswith(("-", "+")) or t in ("-", "+"):
                break
            flags = t[1:]
            if "o" in flags:  # `-o NAME`, also clustered: `-euo pipefail`
                option = texts[i + 1] if i + 1 < len(texts) else ""
                if option not in SAFE_SET_OPTIONS:
                    return f"set {t} {option} may change how bash reads the rest of the input"
                flags = flags.replace("o", "")
                i += 1
            if set(flags) - set(SAFE_SET_FLAGS):
                return f"set {t} may change how bash reads the rest of the input"
            i += 1
        return None
    return None


def shell_option_problem(option: str, following: str) -> str | None:
    """Why an option of ``bash``/``sh`` … makes it read or run its script otherwise than the
    readers here read it, or None. ``following`` is the next word (the name after ``-o``)."""
    if option.startswith("--"):
        if option in SAFE_SHELL_LONG_OPTIONS:
            return None
        return f"the shell option {option} changes what the shell reads or runs first"
    flags = option[1:]
    if set(flags) & set("oO"):
        name = following if flags.endswith(("o", "O")) else ""
        if "O" in flags or name not in SAFE_SET_OPTIONS:
            return f"the shell option {option} {name} changes how the script is read"
        flags = flags.replace("o", "")
    unsafe = set(flags) - set(SAFE_SHELL_FLAGS)
    if unsafe:
        return f"the shell option {option} changes how the script is read or what runs first"
    return None


# Flags of `bash -c` and friends that change neither parsing nor what runs first (-c and -s
# say where the script comes from; -i, -l, -k, -O … are not among them).
SAFE_SHELL_FLAGS = "cseuxvfCabhmBPTEnrp"
SAFE_SHELL_LONG_OPTIONS = names("--noprofile --norc --noediting --restricted --verbose")
SHELL_OPTIONS_WITH_ARG = names("--rcfile --init-file -o +o -O +O")

# `set` flags that change neither parsing nor which commands run.
SAFE_SET_FLAGS = "euxvfCabhmBHPTE"
SAFE_SET_OPTIONS = names(
    "errexit nounset xtrace verbose noglob noclobber pipefail allexport notify hashall "
    "monitor braceexpand histexpand physical functrace errtrace ignoreeof"
)


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
            if t.startswith("-") and len(t) > 1 and not (self.positional and _digits(t[1:])):
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
                        if _digits(t[1:].lstrip("-")) and "-N" in self.flags:
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


def _digits(text: str) -> bool:
    """ASCII digits only: bash takes no other digits for a number (``str.isdigit`` does)."""
    return text.isascii() and text.isdigit()


def _opts(text: str = "") -> frozenset[str]:
    return frozenset(text.split())


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
# Program options that write a file


@dataclass(frozen=True, slots=True)
class FileOptions:
    """The options of one program (or ``program subcommand``) whose argument is a file it writes.

    ``options`` take the file as the next word or after ``=`` (``-o out``, ``--output=out``).
    ``getopt``: short options may be clustered or take their value attached (``-no out``,
    ``-oout``) and long options may be abbreviated (``--out=x``), as GNU getopt and git accept;
    both are read the strict way (a cluster holding the letter writes). ``last_operand``: the
    last non-option word is written (``cp a b``), unless a ``target`` option names it.
    """

    options: frozenset[str] = frozenset()
    getopt: bool = True
    last_operand: bool = False
    target: frozenset[str] = frozenset()  # cp -t DIR, --target-directory=DIR
    operand: int | None = None  # this operand (0-based) is written: uniq IN OUT, zip OUT …
    # Options after which the operands themselves are written in place (sed -i, gofmt -w);
    # ``always_in_place``: the operands are written unless one of ``in_place`` (--check) is given.
    in_place: frozenset[str] = frozenset()
    always_in_place: bool = False
    # Options that carry the script (sed -e, perl -e); without one the first operand is it.
    script: frozenset[str] = frozenset()


def _writes(options: str = "", **kwargs: object) -> FileOptions:
    return FileOptions(_opts(options), **kwargs)  # type: ignore[arg-type]


_CC = _writes("-o", getopt=False)
_GO = _writes(
    "-o -coverprofile -cpuprofile -memprofile -blockprofile -mutexprofile -trace -outputdir",
    getopt=False,
)
_GIT_OUTPUT = _writes("--output")
_CP = _writes(last_operand=True, target=_opts("-t --target-directory"))

# Keyed by program, or by "program subcommand" where the subcommand decides.
WRITE_OPTIONS: dict[str, FileOptions] = {
    "sort": _writes("-o --output"),
    "shuf": _writes("-o --output"),
    "iconv": _writes("-o --output"),
    "uniq": _writes(operand=1),
    "time": _writes("-o --output"),
    "strace": _writes("-o --output"),
    "ltrace": _writes("-o --output"),
    "patch": _writes("-o --output -r --reject-file"),
    "cp": _CP,
    "mv": _CP,
    "install": _CP,
    "ln": _CP,
    "rsync": _writes(last_operand=True),
    "scp": _writes(last_operand=True),
    "gcc": _CC,
    "g++": _CC,
    "cc": _CC,
    "c++": _CC,
    "clang": _CC,
    "clang++": _CC,
    "tcc": _CC,
    "ld": _CC,
    "as": _CC,
    "nasm": _CC,
    "rustc": _writes("-o --out-dir --emit", getopt=False),
    "javac": _writes("-d -s -h", getopt=False),
    "go build": _GO,
    "go test": _GO,
    "go tool": _GO,
    "pandoc": _writes("-o --output"),
    "curl": _writes(
        "-o --output -D --dump-header -c --cookie-jar --trace --trace-ascii --stderr "
        "--libcurl --etag-save --output-dir"
    ),
    "wget": _writes(
        "-O --output-document -o --output-file -a --append-output -P --directory-prefix "
        "--save-cookies --warc-file"
    ),
    "tar": _writes("-f --file"),  # when it creates an archive (c, r, u, A): see the walker
    "zip": _writes("--out -O", operand=0),
    "unzip": _writes("-d"),
    "openssl": _writes("-out -keyout", getopt=False),
    "ssh-keygen": _writes("-f", getopt=False),
    "docker save": _writes("-o --output"),
    "docker export": _writes("-o --output"),
    "docker build": _writes("-o --output --iidfile --metadata-file"),
    "pytest": _writes(
        "--junitxml --junit-xml --resultlog --html --basetemp --log-file --report-log "
        "--json-report-file --cov-report"
    ),
    "py.test": _writes("--junitxml --junit-xml --resultlog --html --basetemp --log-file"),
    "coverage": _writes("-o --data-file -d --directory"),
    "mypy": _writes(
        "--junit-xml --html-report --txt-report --xml-report --linecount-report "
        "--cobertura-xml-report --cache-dir"
    ),
    "jest": _writes("--outputFile --coverageDirectory --cacheDirectory"),
    "vitest": _writes("--outputFile"),
    "eslint": _writes("-o --output-file --cache-location", in_place=_opts("--fix")),
    "tsc": _writes("--outDir --outFile --out --declarationDir --tsBuildInfoFile"),
    "esbuild": _writes("--outfile --outdir --metafile"),
    "babel": _writes("-o --out-file -d --out-dir"),
    "rollup": _writes("-o --file -d --dir"),
    "webpack": _writes("-o --output-path"),
    "pip install": _writes("-t --target --prefix --root --report --log"),
    "pip download": _writes("-d --dest --log"),
    "pip wheel": _writes("-w --wheel-dir --log"),
    "npm pack": _writes("--pack-destination"),
    "git diff": _GIT_OUTPUT,
    "git diff-tree": _GIT_OUTPUT,
    "git diff-index": _GIT_OUTPUT,
    "git diff-files": _GIT_OUTPUT,
    "git difftool": _GIT_OUTPUT,
    "git log": _GIT_OUTPUT,
    "git show": _GIT_OUTPUT,
    "git whatchanged": _GIT_OUTPUT,
    "git range-diff": _GIT_OUTPUT,
    "git format-patch": _writes("-o --output-directory --output"),
    "git archive": _writes("-o --output"),
    "git bundle": _writes(operand=1),  # git bundle create FILE
    "git clone": _writes(operand=1),  # git clone URL DIR
    "sed": _writes("", in_place=_opts("-i --in-place"), script=_opts("-e --expression -f --file")),
    "perl": _writes("", in_place=_opts("-i"), script=_opts("-e -E")),
    "gofmt": _writes("", in_place=_opts("-w"), getopt=False),
    "goimports": _writes("", in_place=_opts("-w"), getopt=False),
    "shfmt": _writes("", in_place=_opts("-w --write")),
    "clang-format": _writes("", in_place=_opts("-i")),
    "prettier": _writes("-o --output", in_place=_opts("-w --write")),
    "autopep8": _writes("", in_place=_opts("-i --in-place")),
    "yq": _writes("", in_place=_opts("-i --inplace")),
    # Formatters that rewrite their operands unless told only to check or show a diff.
    "black": _writes("", in_place=_opts("--check --diff"), always_in_place=True),
    "isort": _writes("", in_place=_opts("--check --check-only -c --diff"), always_in_place=True),
    "ruff format": _writes("", in_place=_opts("--check --diff"), always_in_place=True),
}
# Subcommands are looked up after these programs' global options.
GIT_GLOBAL_WITH_ARG = _opts(
    "-C -c --git-dir --work-tree --namespace --super-prefix --config-env --exec-path"
)


# --------------------------------------------------------------------------------------------
# Program options that run another program

# Commands that run a program their configuration names, whatever their options say.
RUNS_A_PROGRAM = frozenset({"git difftool", "git mergetool"})

# Keyed like WRITE_OPTIONS. The option's value names a program (or a command line) that the
# program runs: the line asks, as an allowed `sort *` must not run `--compress-program=x`.
EXEC_OPTIONS: dict[str, frozenset[str]] = {
    "sort": names("--compress-program"),
    "tar": names(
        "-I --use-compress-program --to-command --checkpoint-action --info-script -F "
        "--new-volume-script --rsh-command"
    ),
    "rsync": names("-e --rsh --rsync-path"),
    "ssh": names("-o -F"),
    "scp": names("-S -o -F"),
    "sftp": names("-S -o -F"),
    "zip": names("-TT --unzip-command"),
    "man": names("-P --pager -H --html"),
    "mapfile": names("-C"),
    "readarray": names("-C"),
    "git": names("-c --config-env --exec-path"),  # before the subcommand: core.pager=…
    "git difftool": names("-x --extcmd -t --tool"),
    "git mergetool": names("-t --tool"),
    "git rebase": names("-x --exec"),
    "git grep": names("-O --open-files-in-pager"),
    "git fetch": names("--upload-pack"),
    "git clone": names("-u --upload-pack --template -c --config"),
    "git ls-remote": names("--upload-pack"),
    "git pull": names("--upload-pack"),
    "git push": names("--receive-pack --exec"),
    "git archive": names("--exec"),
    "git submodule": names("foreach"),
    "git bisect": names("run"),
    # npm takes any configuration key as an option; these run programs or read a config file
    "npm": names("--script-shell --node-options --userconfig --globalconfig --init-module"),
    "flock": names("-c --command"),
    "script": names("-c --command"),
}
