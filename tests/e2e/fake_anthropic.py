"""A scripted stand-in for the Anthropic Messages API, for driving the real Claude Code CLI.

Run as ``python -m tests.e2e.fake_anthropic`` (standard library only). It listens on
127.0.0.1 on a free port and writes the port to ``$GK_PORT_FILE`` (how
:mod:`tests.e2e.netns_main` finds it).

``$GK_SCRIPT`` names a JSON file: a list of turns, each either ``{"text": "..."}`` or
``{"tool_use": {"name": "Bash", "input": {"command": "..."}}}`` (or ``"tool_uses": [...]``
for several calls in one turn). A request to ``POST /v1/messages`` that offers tools is a turn
of the main conversation: the number of assistant messages it already carries is the index of
the turn to play (past the end: a final ``"done"``). Requests without tools (titles, summaries,
other side questions Claude Code asks) get a short text answer and do not advance the script.

Every request is appended to ``$GK_REQUEST_LOG`` as one JSON line (``method``, ``path``,
``status``, ``body``), unknown endpoints included, so a test can read what Claude Code sent
back (``tool_result`` blocks and their error text).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

MODEL = "claude-sonnet-4-5-20250929"
_lock = threading.Lock()
_counter = [0]


def _next_id(prefix: str) -> str:
    with _lock:
        _counter[0] += 1
        return f"{prefix}_{os.getpid()}_{_counter[0]:04d}"


def load_script() -> list[dict[str, Any]]:
    name = os.environ.get("GK_SCRIPT")
    if not name:
        return []
    turns: list[dict[str, Any]] = json.loads(Path(name).read_text(encoding="utf-8"))
    return turns


def blocks_for(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of one scripted turn."""
    blocks: list[dict[str, Any]] = []
    if "text" in turn:
        blocks.append({"type": "text", "text": str(turn["text"])})
    uses = list(turn.get("tool_uses", []))
    if "tool_use" in turn:
        uses.append(turn["tool_use"])
    blocks.extend(
        {"type": "tool_use", "id": _next_id("toolu"), "name": u["name"], "input": u["input"]}
        for u in uses
    )
    return blocks or [{"type": "text", "text": "done"}]


def choose(body: dict[str, Any], script: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to answer ``body`` with."""
    if not body.get("tools"):
        return [{"type": "text", "text": "Gatekeeper test"}]
    messages = body.get("messages") or []
    step = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    if step < len(script):
        return blocks_for(script[step])
    return [{"type": "text", "text": "done"}]


def sse(blocks: list[dict[str, Any]], model: str) -> bytes:
    """A complete streamed Messages API response carrying ``blocks``."""
    events: list[tuple[str, dict[str, Any]]] = []
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    events.append(
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": _next_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 10,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                },
            },
        )
    )
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )


def whole(blocks: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The same response, not streamed."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    return {
        "id": _next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: ClassVar[list[dict[str, Any]]] = []
    log_path: ClassVar[Path | None] = None

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"fake_anthropic: {format % args}\n")

    def _record(self, status: int, body: Any) -> None:
        if self.log_path is None:
            return
        line = json.dumps(
            {"method": self.command, "path": self.path, "status": status, "body": body}
        )
        with _lock, self.log_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", _next_id("req"))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path == "/v1/messages" and isinstance(body, dict):
            self._record(200, body)
            blocks = choose(body, self.script)
            model = str(body.get("model") or MODEL)
            if body.get("stream"):
                self._send(200, sse(blocks, model), "text/event-stream")
            else:
                self._json(200, whole(blocks, model))
            return
        if path == "/v1/messages/count_tokens":
            self._record(200, body)
            self._json(200, {"input_tokens": 10})
            return
        self._record(404, body)
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v1/models":
            self._record(200, None)
            self._json(
                200,
                {
                    "data": [
                        {
                            "type": "model",
                            "id": MODEL,
                            "display_name": "Fake",
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                    ],
                    "has_more": False,
                    "first_id": MODEL,
                    "last_id": MODEL,
                },
            )
            return
        self._record(404, None)
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})

    def do_HEAD(self) -> None:
        self._record(200, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> int:
    Handler.script = load_script()
    log = os.environ.get("GK_REQUEST_LOG")
    Handler.log_path = Path(log) if log else None
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_file = Path(os.environ["GK_PORT_FILE"])
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(port_file)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
