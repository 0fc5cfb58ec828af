"""The agent hooks: Claude Code's and Codex's PreToolUse hook, answered by the daemon.

A harness starts the hook once per tool call, so the hook is a process whose start-up is
most of its cost: this module uses the standard library only (no gatekeeper module beyond
the package's empty ``__init__``) and speaks the socket protocol directly. Run it as::

    python -m gatekeeper.hooks claude-code|codex [--socket PATH] [--agent NAME] [--wait]
                                                 [--deadline SECONDS]

(``gatekeeper hook install …`` writes that line into the harness's settings, with the
absolute interpreter path and a fallback that blocks when the hook itself cannot run.)

What it decides: shell commands as commands, file tools by path (edit or write rules), and
for Codex each path of an ``apply_patch``. The project root comes from the harness
(``$CLAUDE_PROJECT_DIR``; Codex's session record) and is sent as ``root`` beside the ``cwd``
the command runs in; the harness's session, tool-call id and permission mode go along as
``context`` for the audit log.

Answers, and what happens when there is none:

* Claude Code: ``allow`` / ``ask`` / ``deny`` as Claude Code's ``permissionDecision``.
  With ``--wait`` an ask waits for a human in ``gatekeeper approve`` and becomes allow or
  deny (headless ``claude -p`` cannot show a prompt). No daemon, no answer before the
  deadline, a bad payload: ``ask`` in an interactive session; ``deny`` where an ask cannot
  reach a person (``bypassPermissions``, ``dontAsk``).
* Codex: a hook can only block (an "ask" or a silent hook lets the call run), so anything
  but an allow — ask without ``--wait``, deny, every failure — is a deny with its reason.

The hook always exits 0 and answers in JSON; its own deadline (``--deadline``) is kept well
inside the harness's hook timeout, because a harness that kills a slow hook runs the tool.
"""

from __future__ import annotations

import _socket  # the C module: `socket` would add ~5 ms of start-up (enum, selectors)
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: it costs a hook ~2.5 ms
    from typing import Any

MAX_PAYLOAD = 16 * 1024 * 1024
MAX_REPLY = 4 * 1024 * 1024
DEADLINE = 20.0  # seconds for a check; the installer gives the harness a longer timeout
WAIT_DEADLINE = 3300.0  # with --wait: how long a human may take (inside a 3600 s timeout)

CLAUDE_FILE_TOOLS = {"Edit": "edit", "MultiEdit": "edit", "NotebookEdit": "edit", "Write": "write"}
CODEX_FILE_TOOLS = {"Edit": "edit", "Write": "write"}
# Permission modes in which Claude Code has no person to show an "ask" to.
NO_PROMPT_MODES = frozenset({"bypassPermissions", "dontAsk"})


class HookError(Exception):
    """The check could not be made; the message says why (it reaches the agent)."""


# --------------------------------------------------------------------------------------------
# The daemon


def socket_path(explicit: str | None = None) -> str:
    """Where the daemon listens (the same order as gatekeeper.paths.default_socket)."""
    if explicit:
        return explicit
    env = os.environ.get("GATEKEEPER_SOCKET")
    if env:
        return env
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "gatekeeper", "gatekeeper.sock")
    return f"/tmp/gatekeeper-{os.getuid()}/gatekeeper.sock"  # noqa: S108 - the documented default


def check(path: str, request: dict[str, Any], deadline: float) -> dict[str, Any]:
    """One ``check`` on its own connection; the final reply (a ``waiting`` event is skipped).

    ``deadline`` is a ``time.monotonic()`` value: past it, HookError.
    """
    line = json.dumps({"v": 1, "id": 1, "op": "check", **request}, ensure_ascii=False)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.connect(path)
            sock.sendall(line.encode("utf-8", "surrogatepass") + b"\n")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise HookError(f"no gatekeeper daemon at {path} ({exc.strerror})") from None
        buf = b""
        while True:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HookError("the gatekeeper daemon did not answer in time")
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    raise HookError("the gatekeeper daemon closed the connection")
                buf += chunk
                if len(buf) > MAX_REPLY:
                    raise HookError("the gatekeeper daemon's reply is too large")
            raw, buf = buf.split(b"\n", 1)
            try:
                reply = json.loads(raw)
            except ValueError:
                raise HookError("the gatekeeper daemon's reply is not JSON") from None
            if isinstance(reply, dict) and reply.get("id") == 1 and "event" not in reply:
                return reply
    except TimeoutError:
        raise HookError("the gatekeeper daemon did not answer in time") from None
    except OSError as exc:
        raise HookError(f"cannot talk to the gatekeeper daemon at {path} ({exc})") from None
    finally:
        sock.close()


def verdict(reply: dict[str, Any]) -> tuple[str, str]:
    """(decision, reason) from a check's reply; HookError for an error reply."""
    error = reply.get("error")
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        raise HookError(f"gatekeeper refused the check ({code}: {message})")
    decision = reply.get("decision")
    if decision not in ("allow", "ask", "deny"):
        raise HookError("the gatekeeper daemon gave no decision")
    reason = f"gatekeeper ({reply.get('agent')}): {reply.get('reason', '')}"
    if reply.get("message"):
        reason += f" — {reply['message']}"
    return str(decision), reason


# --------------------------------------------------------------------------------------------
# apply_patch


PATCH_FILES = (
    ("*** Add File:", "write"),
    ("*** Update File:", "edit"),
    ("*** Delete File:", "edit"),
    ("*** Move to:", "write"),
)
PATCH_FRAMES = ("*** Begin Patch", "*** End Patch", "*** End of File")


def patch_paths(text: str) -> list[tuple[str, str]]:
    """(permission, path) for every file an ``apply_patch`` text touches: an added file and a
    move's destination are writes, an updated or deleted file an edit. HookError for a patch
    that could be read otherwise.

    Read as loosely as Codex's parser could read it, so that it finds every file Codex may
    touch: lines split at ``\n`` only (a trailing ``\r`` dropped), a header recognised after
    any leading or trailing blanks (Codex trims them). A line that looks like a header but is
    none, and a path with control characters, make the whole patch undecidable."""
    found: list[tuple[str, str]] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line.startswith("***"):
            continue
        for marker, permission in PATCH_FILES:
            if line.startswith(marker):
                path = line[len(marker) :].strip()
                if not path or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in path):
                    raise HookError(f"a patch header gatekeeper cannot read: {line[:120]!r}")
                found.append((permission, path))
                break
        else:
            if line not in PATCH_FRAMES:
                raise HookError(f"a patch line gatekeeper cannot read: {line[:120]!r}")
    return found


def _patch_checks(text: str) -> list[dict[str, Any]]:
    paths = patch_paths(text)
    if not paths:
        raise HookError("an apply_patch call that names no file")
    return [{"path": p, "permission": perm} for perm, p in paths]


# --------------------------------------------------------------------------------------------
# Payloads → checks


def requests_for(harness: str, payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The checks one tool call needs (None: a tool gatekeeper has no opinion on).
    HookError when the call cannot be read."""
    tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if not isinstance(tool_input, dict):
        tool_input = {}
    if tool == "Bash":
        command = tool_input.get("command")
        if not isinstance(command, str):
            raise HookError("a Bash call without a command")
        checks: list[dict[str, Any]] = [{"command": command}]
        if (
            harness == "codex"
            and "*** Begin Patch" in command
            and ("apply_patch" in command or "applypatch" in command)
        ):
            # Codex applies `apply_patch <<'EOF' …` (also inside `bash -lc`) itself,
            # in-process: the files of the patch are edits and writes like apply_patch's.
            checks += _patch_checks(command)
        return checks
    files = CLAUDE_FILE_TOOLS if harness == "claude-code" else CODEX_FILE_TOOLS
    if tool in files:
        path = tool_input.get("file_path") or tool_input.get("notebook_path")
        if not isinstance(path, str) or not path:
            raise HookError(f"a {tool} call without a file path")
        return [{"path": path, "permission": files[str(tool)]}]
    if harness == "codex" and tool == "apply_patch":
        text = tool_input.get("command") or tool_input.get("patch") or tool_input.get("input")
        if not isinstance(text, str):
            raise HookError("an apply_patch call without a patch")
        return _patch_checks(text)
    return None


def codex_root(payload: dict[str, Any]) -> str | None:
    """The directory a Codex session started in, from the first record of its transcript
    (``session_meta``); None if it cannot be read."""
    transcript = payload.get("transcript_path")
    if not isinstance(transcript, str) or not transcript:
        return None
    try:
        with open(transcript, "rb") as f:
            first = json.loads(f.readline(1 << 20))
        cwd = first.get("payload", {}).get("cwd")
    except (OSError, ValueError, AttributeError):
        return None
    return cwd if isinstance(cwd, str) and cwd.startswith("/") else None


def where(harness: str, payload: dict[str, Any]) -> tuple[str, str]:
    """(cwd, root): where the command runs and the project it belongs to."""
    cwd = payload.get("cwd")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        cwd = os.getcwd()
    root: str | None = None
    if harness == "claude-code":
        root = os.environ.get("CLAUDE_PROJECT_DIR")
    elif harness == "codex":
        # Codex starts its hooks in the session's directory, whatever workdir the command
        # names (which the payload's cwd follows): that is the fallback when the session
        # keeps no record (codex exec --ephemeral).
        root = codex_root(payload) or os.getcwd()
    if not root or not root.startswith("/"):
        root = cwd
    return cwd, root


def context_of(harness: str, payload: dict[str, Any]) -> dict[str, str]:
    ctx = {"harness": harness}
    for key, name in (
        ("session_id", "session"),
        ("tool_use_id", "call"),
        ("permission_mode", "mode"),
        ("turn_id", "turn"),
    ):
        value = payload.get(key)
        if isinstance(value, str) and value:
            ctx[name] = value[:1024]
    return ctx


def decide(
    harness: str,
    payload: Any,
    *,
    socket: str,
    agent: str | None,
    wait: bool,
    deadline: float,
) -> tuple[str, str] | None:
    """(decision, reason) for one tool call, None for no opinion. HookError on failure."""
    if not isinstance(payload, dict):
        raise HookError("the hook input is not a JSON object")
    requests = requests_for(harness, payload)
    if requests is None:
        return None
    cwd, root = where(harness, payload)
    common: dict[str, Any] = {"cwd": cwd, "root": root, "context": context_of(harness, payload)}
    if agent:
        common["agent"] = agent
    if wait:
        common["wait"] = True
    worst: tuple[str, str] | None = None
    rank = {"allow": 0, "ask": 1, "deny": 2}
    for request in requests:
        found = verdict(check(socket, {**request, **common}, deadline))
        if worst is None or rank[found[0]] > rank[worst[0]]:
            worst = found
        if found[0] == "deny":
            break
    return worst


# --------------------------------------------------------------------------------------------
# Answers in each harness's terms


def claude_answer(decision: str, reason: str) -> dict[str, Any]:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }
    }


def answer(
    harness: str, payload: Any, found: tuple[str, str] | None, failure: str | None
) -> dict[str, Any] | None:
    """The JSON to print (None: print nothing, the harness goes on as usual)."""
    if harness == "codex":
        if failure is not None:
            return claude_answer("deny", f"gatekeeper: {failure}; blocked instead of run unchecked")
        if found is None or found[0] == "allow":
            return None  # Codex takes silence as no objection
        decision, reason = found
        if decision == "ask":
            reason += " (this needs a person's approval: set the hook up with --wait)"
        return claude_answer("deny", reason)
    if failure is not None:
        mode = payload.get("permission_mode") if isinstance(payload, dict) else None
        if mode in NO_PROMPT_MODES:
            return claude_answer("deny", f"gatekeeper: {failure}; blocked (no one to ask)")
        return claude_answer("ask", f"gatekeeper: {failure}; asking instead of allowing")
    if found is None:
        return None
    return claude_answer(*found)


def run(
    harness: str, raw: bytes, *, socket: str, agent: str | None, wait: bool, deadline: float
) -> dict[str, Any] | None:
    payload: Any = None
    failure: str | None = None
    found: tuple[str, str] | None = None
    try:
        if len(raw) > MAX_PAYLOAD:
            raise HookError("the hook input is larger than 16 MiB")
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise HookError(f"the hook input is not valid JSON ({exc})") from None
        found = decide(harness, payload, socket=socket, agent=agent, wait=wait, deadline=deadline)
    except HookError as exc:
        failure = str(exc)
    return answer(harness, payload, found, failure)


USAGE = (
    "usage: python -m gatekeeper.hooks claude-code|codex [--socket PATH] [--agent NAME] "
    "[--wait] [--deadline SECONDS]"
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("claude-code", "codex"):
        print(USAGE, file=sys.stderr)
        return 2
    harness = args.pop(0)
    options: dict[str, str] = {}
    wait = False
    while args:
        arg = args.pop(0)
        if arg == "--wait":
            wait = True
        elif arg in ("--socket", "--agent", "--deadline") and args:
            options[arg] = args.pop(0)
        else:
            print(f"gatekeeper hook: unknown argument {arg!r}\n{USAGE}", file=sys.stderr)
            return 2
    try:
        seconds = float(options.get("--deadline", WAIT_DEADLINE if wait else DEADLINE))
    except ValueError:
        print(f"gatekeeper hook: --deadline takes seconds\n{USAGE}", file=sys.stderr)
        return 2
    started = time.monotonic()
    raw = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
    result = run(
        harness,
        raw,
        socket=socket_path(options.get("--socket")),
        agent=options.get("--agent") or os.environ.get("GATEKEEPER_AGENT") or None,
        wait=wait,
        deadline=started + seconds,
    )
    if result is not None:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
