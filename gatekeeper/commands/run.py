"""``gatekeeper run -- COMMAND…`` and the shared client loop used by ``gatekeeper-shell``."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Mapping

from gatekeeper.client import Client, ClientError, DaemonUnavailable

EXIT_BLOCKED = 126  # the daemon refused to run the command (deny, reject, nobody answered)
EXIT_UNAVAILABLE = 125  # no daemon, or it answered with an error


def exit_status(code: int) -> int:
    """The status a shell reports for a command: 128 + N for death by signal N."""
    return 128 - code if code < 0 else code


def run_through_daemon(
    command: str,
    *,
    socket_path: str | None,
    agent: str | None,
    cwd: str,
    env: Mapping[str, str] | None,
    timeout: float | None,
    stdin: bytes | None,
    quiet_waiting: bool = False,
    signal_as_negative: bool = False,
) -> int:
    """Run ``command`` via the daemon, streaming its output to ours; return the exit status."""
    try:
        client = Client(socket_path)
    except DaemonUnavailable as exc:
        sys.stderr.write(f"gatekeeper: {exc}\n")
        return EXIT_UNAVAILABLE
    out, err = sys.stdout.buffer, sys.stderr.buffer
    rid = "run"
    interrupted = False
    with client:
        events = client.run(
            command, cwd=cwd, agent=agent, env=env, timeout=timeout, stdin=stdin, request_id=rid
        )
        while True:
            try:
                event = next(events)
            except StopIteration:
                return EXIT_UNAVAILABLE
            except KeyboardInterrupt:
                if interrupted:
                    return 130
                interrupted = True
                with contextlib.suppress(OSError):
                    client.cancel(rid)
                continue
            except ClientError as exc:
                sys.stderr.write(f"gatekeeper: {exc.message} ({exc.code})\n")
                return EXIT_UNAVAILABLE
            except DaemonUnavailable as exc:
                sys.stderr.write(f"gatekeeper: {exc}\n")
                return EXIT_UNAVAILABLE
            kind = event.get("event")
            if kind == "output":
                stream = out if event.get("stream") == "stdout" else err
                stream.write(event["raw"])
                stream.flush()
            elif kind == "waiting" and not quiet_waiting:
                err.write(
                    f"gatekeeper: waiting for a human to approve (request {event['request']}; "
                    f"answer with `gatekeeper approve`, {event['timeout_s']:g} s)\n".encode()
                )
                err.flush()
            elif kind == "blocked":
                message = f" — {event['message']}" if event.get("message") else ""
                err.write(f"gatekeeper: blocked: {event['reason']}{message}\n".encode())
                err.flush()
                return EXIT_BLOCKED
            elif kind == "exit":
                code = int(event["code"])
                if interrupted:
                    return 130
                return code if signal_as_negative else exit_status(code)


def read_stdin_if_ready() -> bytes | None:
    """Our stdin, to pass on to the command, when it is a file or a closed/ready pipe.

    A terminal or a pipe with nothing written yet is not waited for.
    """
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    if os.isatty(fd):
        return None
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return None
    if not ready:
        return None
    return sys.stdin.buffer.read()


def run(
    *, words: list[str], socket_path: str | None, agent: str | None, timeout: float | None
) -> int:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        sys.stderr.write("gatekeeper run: give the command after --\n")
        return 2
    command = words[0] if len(words) == 1 else " ".join(words)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_through_daemon(
        command,
        socket_path=socket_path,
        agent=agent,
        cwd=os.getcwd(),
        env=dict(os.environ),
        timeout=timeout,
        stdin=read_stdin_if_ready(),
    )
