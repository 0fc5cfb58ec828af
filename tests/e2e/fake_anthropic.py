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
from typing import Any

from tests.e2e.fake_base import FakeHandler, next_id, serve

MODEL = "claude-sonnet-4-5-20250929"


def blocks_for(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of one scripted turn."""
    blocks: list[dict[str, Any]] = []
    if "text" in turn:
        blocks.append({"type": "text", "text": str(turn["text"])})
    uses = list(turn.get("tool_uses", []))
    if "tool_use" in turn:
        uses.append(turn["tool_use"])
    blocks.extend(
        {"type": "tool_use", "id": next_id("toolu"), "name": u["name"], "input": u["input"]}
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
                    "id": next_id("msg"),
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
        "id": next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


class Handler(FakeHandler):
    name = "fake_anthropic"
    id_header = "request-id"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
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

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
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

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._record(200, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> int:
    return serve(Handler)


if __name__ == "__main__":
    raise SystemExit(main())
