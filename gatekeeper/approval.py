"""Pending requests waiting for a human, and who may answer them (pure state + psutil checks)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from gatekeeper.engine import Decision
from gatekeeper.executor import MARKER


@dataclass(frozen=True, slots=True)
class HumanAnswer:
    answer: str  # once | always | reject | timeout | cancelled
    pattern: str | None = None
    message: str | None = None

    @property
    def approved(self) -> bool:
        return self.answer in ("once", "always")

    @property
    def decided_by(self) -> str:
        """``human`` for once/always/reject, else what ended the wait (timeout, cancelled)."""
        return "human" if self.answer in ("once", "always", "reject") else self.answer


@dataclass(slots=True)
class Pending:
    key: str
    agent: str
    cwd: str
    command: str
    decision: Decision
    client_pid: int | None
    client_name: str | None
    created: float
    timeout: float
    future: asyncio.Future[HumanAnswer] = field(repr=False)
    suggestion: str = ""
    permission: str = "bash"
    context: dict[str, str] | None = None  # the harness's ids (session, tool call …)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "request": self.key,
            "agent": self.agent,
            "cwd": self.cwd,
            "command": self.command,
            "decision": self.decision.to_json(),
            "client": {"pid": self.client_pid, "name": self.client_name},
            "created": self.created,
            "waited_s": round(now - self.created, 3),
            "timeout_s": self.timeout,
            "expires_at": self.created + self.timeout,
            "suggested_pattern": self.suggestion,
            "permission": self.permission,
            **({"context": self.context} if self.context else {}),
        }


# Programs whose second word is a sub-command: "always" remembers `git push *`, not `git *`.
SUBCOMMAND_TOOLS = frozenset(
    {
        "git",
        "npm",
        "pnpm",
        "yarn",
        "bun",
        "cargo",
        "go",
        "docker",
        "podman",
        "kubectl",
        "helm",
        "terraform",
        "pip",
        "pip3",
        "uv",
        "poetry",
        "gh",
        "brew",
        "apt",
        "apt-get",
        "systemctl",
        "dotnet",
        "mvn",
        "gradle",
        "make",
        "rustup",
        "conda",
        "aws",
        "gcloud",
        "az",
    }
)


def suggest_pattern(decision: Decision) -> str:
    """The rule an "always" would add, opencode-style: the command's prefix + `` *``.

    The first asking part decides: for a command, its name plus a sub-command word if it has
    one (``git push *``); for a file write, its directory (``src/*``).
    """
    for part in decision.parts:
        if part.decision != "ask":
            continue
        if part.permission == "bash":
            words = part.subject.split()
            if not words:
                continue
            keep = words[:1]
            if (
                words[0] in SUBCOMMAND_TOOLS
                and len(words) > 1
                and words[1][:1].isalpha()
                and words[1].replace("-", "").isalnum()
            ):
                keep.append(words[1])
            return " ".join(keep) + " *"
        directory = posixpath.dirname(part.subject)
        return (directory + "/*") if directory else "*"
    return ""


Listener = Callable[[str, dict[str, Any]], None]


class Approvals:
    """The queue of requests waiting for a human, and the approvers watching it."""

    def __init__(self) -> None:
        self.items: dict[str, Pending] = {}
        self._ids = itertools.count(1)
        self._listeners: dict[int, Listener] = {}
        self._listener_ids = itertools.count(1)

    def subscribe(self, listener: Listener) -> int:
        key = next(self._listener_ids)
        self._listeners[key] = listener
        for item in list(self.items.values()):
            listener("pending", item.to_json())
        return key

    def unsubscribe(self, key: int) -> None:
        self._listeners.pop(key, None)

    @property
    def approvers(self) -> int:
        return len(self._listeners)

    def _notify(self, event: str, body: dict[str, Any]) -> None:
        for listener in list(self._listeners.values()):
            with contextlib.suppress(Exception):
                listener(event, body)

    def add(self, **kwargs: Any) -> Pending:
        loop = asyncio.get_running_loop()
        key = f"p{next(self._ids)}"
        item = Pending(key=key, future=loop.create_future(), created=time.time(), **kwargs)
        item.suggestion = suggest_pattern(item.decision)
        self.items[key] = item
        self._notify("pending", item.to_json())
        return item

    def resolve(self, key: str, answer: HumanAnswer) -> bool:
        item = self.items.pop(key, None)
        if item is None:
            return False
        if not item.future.done():
            item.future.set_result(answer)
        self._notify("resolved", {"request": key, "answer": answer.answer})
        return True


def _chain(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.parents()]
    except psutil.Error:
        return []


def has_controlling_tty(pid: int) -> bool:
    """Whether a process has a controlling terminal (``tty_nr`` in /proc/PID/stat).

    Read directly: psutil.Process.terminal() maps device numbers through a table it builds
    once, so a terminal opened after that (a new tmux pane) would look like none at all.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    return len(fields) > 4 and int(fields[4]) != 0


def approver_refusal(
    approver_pid: int | None,
    requester_pid: int | None,
    run_pids: set[int],
    *,
    require_tty: bool,
) -> str | None:
    """Why this process may not approve, or None (architecture.md §5, docs/security.md).

    Refused: an unknown peer; the requesting client or anything it started; any process the
    daemon started (by ancestry or by the run marker in its environment); with ``require_tty``,
    a process without a controlling terminal (every command the daemon runs has none).
    """
    if approver_pid is None:
        return "the approver's process cannot be identified"
    chain = _chain(approver_pid)
    if not chain:
        return "the approver's process cannot be inspected"
    for p in chain:
        if requester_pid is not None and p.pid == requester_pid:
            return "the requesting client cannot approve its own request"
        if p.pid in run_pids:
            return "a command started by gatekeeper cannot approve requests"
        with contextlib.suppress(psutil.Error):
            if MARKER in p.environ():
                return "a command started by gatekeeper cannot approve requests"
    if require_tty and not has_controlling_tty(approver_pid):
        return "an approver must run in a terminal (a person's prompt)"
    return None
