"""``gatekeeper-shell``: a drop-in for ``bash -c`` that goes through the daemon.

Set ``SHELL=gatekeeper-shell`` for a harness that runs commands with ``$SHELL -c '…'`` and
every command it runs is decided first. Same stdout, stderr, exit status, directory and
environment as ``bash -c``; blocked commands exit 126 with the reason on stderr, and with no
daemon it exits 125 (it never falls back to running the command unchecked).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Sequence

from gatekeeper.commands.run import read_stdin_if_ready, run_through_daemon

_SET_FLAGS = set("aeuxvfhnbkmpBCHPT")


def build_command(argv: Sequence[str]) -> str | None:
    """Turn bash's command line (``-c CMD [ARG0 ARGS…]`` and its options) into one script."""
    args = list(argv)
    flags: list[str] = []
    options: list[str] = []
    command: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-o", "+o") and i + 1 < len(args):
            options.append(f"set {a} {shlex.quote(args[i + 1])}")
            i += 2
            continue
        if a == "--":
            i += 1
            break
        if a.startswith("--"):  # --login, --norc, --noprofile: no meaning for one command
            i += 1
            continue
        if len(a) > 1 and a[0] == "-":
            for ch in a[1:]:
                if ch == "c":
                    command = ""
                elif ch in _SET_FLAGS:
                    flags.append(ch)
            i += 1
            continue
        break
    rest = args[i:]
    if command is None:
        return None
    if not rest:
        return None
    command = rest[0]
    positional = rest[2:]
    prefix = ""
    if flags:
        prefix += f"set -{''.join(flags)}\n"
    for o in options:
        prefix += o + "\n"
    if positional:
        prefix += "set -- " + " ".join(shlex.quote(p) for p in positional) + "\n"
    return prefix + command


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = build_command(args)
    if command is None:
        sys.stderr.write(
            "gatekeeper-shell: only `gatekeeper-shell -c 'COMMAND'` is supported "
            "(it runs COMMAND through the gatekeeper daemon)\n"
        )
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = run_through_daemon(
        command,
        socket_path=os.environ.get("GATEKEEPER_SOCKET"),
        agent=os.environ.get("GATEKEEPER_AGENT"),
        cwd=os.getcwd(),
        env=dict(os.environ),
        timeout=None,
        stdin=read_stdin_if_ready(),
        quiet_waiting=False,
        signal_as_negative=True,
    )
    if status < 0:
        # The command died by a signal: so do we, as bash -c would appear to its parent.
        sys.stdout.flush()
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        return 128 - status
    return status


if __name__ == "__main__":
    raise SystemExit(main())
