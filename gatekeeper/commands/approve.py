"""``gatekeeper approve``: the terminal app, or one answer / a listing for scripts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gatekeeper.approve_app import duration, run_app
from gatekeeper.client import Client, ClientError, DaemonUnavailable
from gatekeeper.paths import default_socket
from gatekeeper.text import visible


def run(
    *,
    socket_path: str | None,
    list_only: bool,
    as_json: bool,
    request: str | None,
    answer: str | None,
    pattern: str | None,
    message: str | None,
    persist: bool,
) -> int:
    path = Path(socket_path) if socket_path else default_socket()
    if request is None and not list_only:
        if not sys.stdin.isatty() or not sys.stdout.isatty():
            sys.stderr.write(
                "gatekeeper approve: the app needs a terminal; for scripts use "
                "`gatekeeper approve --list` or `gatekeeper approve ID once|always|reject`\n"
            )
            return 2
        return run_app(path)
    try:
        with Client(path, timeout=15) as client:
            if list_only:
                return _list(client, as_json)
            if request is None or answer is None:
                return 2
            reply = client.answer(
                request, answer, pattern=pattern, message=message, persist=persist or None
            )
    except DaemonUnavailable as exc:
        sys.stderr.write(f"gatekeeper: {exc}\n")
        return 1
    except ClientError as exc:
        sys.stderr.write(f"gatekeeper approve: {exc.message} ({exc.code})\n")
        return 3 if exc.code == "forbidden" else 1
    done = f"{request}: {answer}"
    if reply.get("pattern") and answer == "always":
        done += f' "{reply["pattern"]}"'
    if reply.get("saved"):
        done += f", saved to {reply['saved']}"
    sys.stdout.write(done + "\n")
    if reply.get("save_error"):
        sys.stderr.write(f"gatekeeper approve: not saved: {reply['save_error']}\n")
        return 1
    return 0


def _list(client: Client, as_json: bool) -> int:
    items = client.pending()
    if as_json:
        for item in items:
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
        return 0
    if not items:
        sys.stdout.write("nothing is waiting\n")
        return 0
    now = time.time()
    for item in items:
        left = duration(float(item["expires_at"]) - now)
        sys.stdout.write(
            f"{item['request']:<6} {item['agent']:<18} {left:>7} left  "
            f"{visible(str(item['command']))}\n"
        )
    return 0
