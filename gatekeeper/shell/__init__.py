"""From a bash command line to the simple commands, file writes and directories it really uses.

Pure: text in, :class:`Analysis` out (architecture.md §3; docs/architecture.md has the map).
:func:`analyse` is the one entry point. The package, along its seams:

* :mod:`~gatekeeper.shell.words` — one word's value after quote removal;
* :mod:`~gatekeeper.shell.tables` — wrappers, shells, file commands, options that write: data;
* :mod:`~gatekeeper.shell.syntax` — tree-sitter-bash and its quirks;
* :mod:`~gatekeeper.shell.walker` — the walk: parts to decide, and gatekeeper's reading;
* :mod:`~gatekeeper.shell.reading`, :mod:`~gatekeeper.shell.mvdan` — readings, and the second
  reader (mvdan/sh's tree of bash's own canonical print), compared before an allow stands.

What the walk finds:

* every simple command of ``;``, ``&&``, ``||``, ``&``, ``|``, newlines, subshells, groups,
  ``$(…)``, backticks, ``<(…)``/``>(…)``, ``if``/``for``/``while``/``case`` bodies and functions;
* wrappers (``sudo``, ``env``, ``xargs``, ``find -exec``, ``bash -c``, ``eval`` …) are unwrapped
  and the inner command is a part of its own; shell strings are re-parsed;
* output redirections, ``tee`` targets and options that write a file (``sort -o``) are
  ``write`` parts; path arguments of file commands and ``cd`` targets outside the project root
  are ``external_directory`` parts;
* anything it cannot read with confidence carries a ``floor`` of ``ask``: the engine never
  allows it, whatever the rules say.
"""

from __future__ import annotations

from gatekeeper.shell.parts import Analysis, Floor, Part, Source
from gatekeeper.shell.places import normpath
from gatekeeper.shell.walker import (
    MAX_COMMAND_BYTES,
    MAX_CWDS,
    MAX_DEPTH,
    MAX_NESTING,
    MAX_NODES,
    MAX_PARTS,
    Walker,
)
from gatekeeper.shell.words import (
    Word,
    check_input,
    decode_ansi_c,
    invisible_characters,
    is_plain_command_word,
)

__all__ = [
    "MAX_COMMAND_BYTES",
    "MAX_CWDS",
    "MAX_DEPTH",
    "MAX_NESTING",
    "MAX_NODES",
    "MAX_PARTS",
    "Analysis",
    "Floor",
    "Part",
    "Source",
    "Word",
    "analyse",
    "check_input",
    "decode_ansi_c",
    "invisible_characters",
    "is_plain_command_word",
]


def analyse(command: str, cwd: str, home: str | None = None, root: str | None = None) -> Analysis:
    """Split ``command`` into the parts a policy decides (see the module docstring).

    ``cwd`` is the directory the line starts in: relative paths resolve against it. ``root``
    is the project root (``cwd`` when not given): rules see paths inside it relative to it,
    and paths outside it — ``cwd`` itself included — are ``external_directory`` parts.
    ``home`` expands ``~``; without it, ``~`` paths are unknown (ask).
    Raises :class:`~gatekeeper.errors.BadInput` for NUL bytes and invalid UTF-8.
    """
    command = check_input(command)
    walker = Walker(root or cwd, home)
    start = normpath(cwd) if cwd else walker.root
    if not walker.inside_root(start):
        walker.emit(Part("external_directory", start))
    odd = invisible_characters(command)
    if odd:
        walker.unsure(
            command, "invisible or control characters in the command: " + ", ".join(odd[:5])
        )
    if not command.strip():
        walker.unsure("", "empty command")
    else:
        walker.source(command, frozenset({start}), 0)
    if not walker.parts:
        walker.unsure(command, "no command to check")
    return Analysis(command, tuple(dict.fromkeys(walker.parts)), tuple(walker.sources))
