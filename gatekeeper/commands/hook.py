"""``gatekeeper hook claude-code``: Claude Code's PreToolUse hook, answered by the daemon.

Claude Code runs the hook before every tool call with a JSON object on stdin (``tool_name``,
``tool_input``, ``cwd``, …) and reads the decision from stdout::

    {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                            "permissionDecision": "allow" | "deny" | "ask",
                            "permissionDecisionReason": "…"}}

``Bash`` commands are checked as commands, ``Edit``/``MultiEdit``/``NotebookEdit`` paths as
edits and ``Write`` paths as writes. Other tools get no opinion (Claude Code decides as
usual). Whatever goes wrong — no daemon, a bad payload, an unknown agent — the answer is
``ask`` with the reason, never a silent allow. The exit status is always 0 (the JSON speaks).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from gatekeeper.client import Client, ClientError, DaemonUnavailable

MAX_PAYLOAD = 16 * 1024 * 1024
EDIT_TOOLS = {"Edit": "edit", "MultiEdit": "edit", "NotebookEdit": "edit", "Write": "write"}


def answer(decision: str, reason: str) -> dict[str, Any]:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }
    }


def decide(payload: Any, socket_path: str | None, agent: str | None) -> dict[str, Any] | None:
    """The hook's answer for one payload (None: no opinion on this tool)."""
    if not isinstance(payload, dict):
        return answer("ask", "gatekeeper: the hook input is not a JSON object; asking instead")
    tool = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    if not isinstance(tool_input, dict):
        tool_input = {}
    cwd = payload.get("cwd")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        cwd = os.getcwd()
    request: dict[str, Any]
    if tool == "Bash":
        command = tool_input.get("command")
        if not isinstance(command, str):
            return answer("ask", "gatekeeper: a Bash call without a command; asking instead")
        request = {"command": command}
    elif tool in EDIT_TOOLS:
        path = tool_input.get("file_path") or tool_input.get("notebook_path")
        if not isinstance(path, str) or not path:
            return answer("ask", f"gatekeeper: a {tool} call without a file path; asking instead")
        request = {"path": path, "permission": EDIT_TOOLS[str(tool)]}
    else:
        return None
    try:
        with Client(socket_path, timeout=30) as client:
            reply = client.request("check", cwd=cwd, agent=agent, **request)
    except DaemonUnavailable as exc:
        return answer("ask", f"gatekeeper: {exc}; asking instead of allowing")
    except ClientError as exc:
        return answer("ask", f"gatekeeper refused the check ({exc.code}: {exc.message}); asking")
    except (OSError, ValueError) as exc:
        return answer("ask", f"gatekeeper: no answer from the daemon ({exc}); asking instead")
    decision = reply.get("decision")
    if decision not in ("allow", "ask", "deny"):
        return answer("ask", "gatekeeper: the daemon gave no decision; asking instead")
    return answer(str(decision), f"gatekeeper ({reply.get('agent')}): {reply.get('reason', '')}")


def claude_code(*, socket_path: str | None, agent: str | None) -> int:
    raw = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
    try:
        if len(raw) > MAX_PAYLOAD:
            raise ValueError("larger than 16 MiB")
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        result: dict[str, Any] | None = answer(
            "ask", f"gatekeeper: the hook input is not valid JSON ({exc}); asking instead"
        )
    else:
        result = decide(
            payload,
            socket_path or os.environ.get("GATEKEEPER_SOCKET"),
            agent or os.environ.get("GATEKEEPER_AGENT"),
        )
    if result is not None:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


def opencode_plugin() -> int:
    """Print the opencode plugin shipped with gatekeeper."""
    source = Path(__file__).resolve().parent.parent / "integrations" / "opencode-plugin.js"
    sys.stdout.write(source.read_text(encoding="utf-8"))
    return 0
