"""A small synchronous client for the gatekeeper socket (protocol v1).

::

    from gatekeeper.client import Client

    with Client() as gk:                       # $GATEKEEPER_SOCKET or the default path
        d = gk.check("npm test && rm -rf build", cwd="/my/project", agent="backend-engineer")
        print(d["decision"], d["reason"])
        for event in gk.run("npm test", cwd="/my/project"):
            if event["event"] == "output":
                print(event["data"], end="")
            elif event["event"] == "exit":
                print("exit status", event["code"])

Every method raises :class:`ClientError` (with ``code`` and ``message``) when the daemon
answers with an error, and :class:`DaemonUnavailable` when there is no daemon to talk to.
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
import struct
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from gatekeeper.errors import GatekeeperError
from gatekeeper.paths import default_socket
from gatekeeper.protocol import (
    MAX_REPLY_LINE,
    LineDecoder,
    ProtocolError,
    decode_reply,
    encode_request,
)


class ClientError(GatekeeperError):
    """The daemon answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DaemonUnavailable(GatekeeperError):
    """No daemon listens on the socket."""


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", raw)[1])


class Client:
    """One connection to the daemon. Not thread-safe; use one per thread."""

    def __init__(self, socket_path: str | Path | None = None, timeout: float | None = None) -> None:
        self.socket_path = Path(socket_path) if socket_path else default_socket()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._sock.close()
            raise DaemonUnavailable(
                f"no gatekeeper daemon at {self.socket_path} ({exc.strerror}); "
                "start one with `gatekeeper serve`"
            ) from None
        except OSError as exc:
            self._sock.close()
            raise DaemonUnavailable(f"cannot connect to {self.socket_path}: {exc}") from None
        # The daemon must be our own user's: a socket in a shared place (/tmp) could be
        # someone else's, who would then see our commands and answer for gatekeeper.
        peer_uid = _peer_uid(self._sock)
        if peer_uid is not None and peer_uid not in (os.getuid(), 0):
            self._sock.close()
            raise DaemonUnavailable(
                f"{self.socket_path} is served by another user (uid {peer_uid}): not trusted"
            )
        self._decoder = LineDecoder(MAX_REPLY_LINE)
        self._lines: deque[bytes] = deque()
        self._ids = itertools.count(1)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    # -- wire ---------------------------------------------------------------------------------

    def send(self, op: str, request_id: str | int | None = None, **fields: Any) -> str | int:
        rid: str | int = request_id if request_id is not None else next(self._ids)
        body = {"id": rid, "op": op, **{k: v for k, v in fields.items() if v is not None}}
        self._sock.sendall(encode_request(body))
        return rid

    def receive(self) -> dict[str, Any]:
        """The next message from the daemon (reply or event)."""
        while not self._lines:
            data = self._sock.recv(65536)
            if not data:
                raise DaemonUnavailable("the daemon closed the connection")
            try:
                self._lines.extend(self._decoder.feed(data))
            except ProtocolError:
                raise ClientError("too_large", "reply line too long") from None
        return decode_reply(self._lines.popleft())

    def receive_for(self, rid: str | int) -> dict[str, Any]:
        """The next message for request ``rid``; an error reply raises :class:`ClientError`."""
        while True:
            msg = self.receive()
            if msg.get("id") != rid:
                continue
            if "error" in msg:
                err = msg["error"]
                raise ClientError(err.get("code", "?"), err.get("message", ""))
            return msg

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its reply (raises ClientError on an error reply)."""
        return self.receive_for(self.send(op, **fields))

    # -- operations ---------------------------------------------------------------------------

    def check(
        self,
        command: str,
        *,
        cwd: str | None = None,
        agent: str | None = None,
        root: str | None = None,
        context: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Decide a command; nothing runs. Returns ``decision``, ``reason``, ``parts``.
        ``root`` is the project root when it is not ``cwd``; ``context`` the caller's ids
        (harness, session, …) for the audit log."""
        return self.request(
            "check",
            command=command,
            cwd=cwd or os.getcwd(),
            agent=agent,
            root=root,
            context=dict(context) if context is not None else None,
        )

    def check_path(
        self,
        path: str,
        permission: str = "edit",
        *,
        cwd: str | None = None,
        agent: str | None = None,
        root: str | None = None,
        context: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Decide an edit or write of a file path (``root``, ``context``: as for check)."""
        return self.request(
            "check",
            path=path,
            permission=permission,
            cwd=cwd or os.getcwd(),
            agent=agent,
            root=root,
            context=dict(context) if context is not None else None,
        )

    def run(
        self,
        command: str,
        *,
        cwd: str | None = None,
        agent: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        request_id: str | int | None = None,
        root: str | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run a command through the daemon; yields its events until ``exit`` or ``blocked``.

        Output events carry text in ``data``; base64 output is decoded into ``bytes`` under
        ``raw`` for convenience.
        """
        stdin_fields: dict[str, str] = {}
        if isinstance(stdin, bytes):
            try:
                stdin_fields["stdin"] = stdin.decode("utf-8")
            except UnicodeDecodeError:
                stdin_fields["stdin_base64"] = base64.b64encode(stdin).decode()
        elif stdin is not None:
            stdin_fields["stdin"] = stdin
        rid = self.send(
            "run",
            request_id,
            command=command,
            cwd=cwd or os.getcwd(),
            agent=agent,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            root=root,
            context=dict(context) if context is not None else None,
            **stdin_fields,
        )
        while True:
            msg = self.receive_for(rid)
            if msg.get("event") == "output":
                if msg.get("encoding") == "base64":
                    msg["raw"] = base64.b64decode(msg["data"])
                else:
                    msg["raw"] = str(msg["data"]).encode()
            yield msg
            if msg.get("event") in ("exit", "blocked"):
                return

    def cancel(self, target: str | int) -> None:
        """Ask the daemon to cancel a run of this connection (send only; events follow)."""
        self.send("cancel", target=target)

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def reload(self) -> dict[str, Any]:
        return self.request("reload")

    def pending(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request("pending")["pending"]
        return items

    def answer(
        self,
        request: str,
        answer: str,
        *,
        pattern: str | None = None,
        message: str | None = None,
        persist: bool | None = None,
    ) -> dict[str, Any]:
        """Answer a pending request: ``once``, ``always`` (with ``pattern``; ``persist`` also
        writes it into the agent's file) or ``reject`` (with an optional ``message``)."""
        return self.request(
            "answer",
            request=request,
            answer=answer,
            pattern=pattern,
            message=message,
            persist=persist,
        )
