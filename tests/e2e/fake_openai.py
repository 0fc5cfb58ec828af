"""A scripted stand-in for the OpenAI Chat Completions API, for driving the real opencode CLI.

Run as ``python -m tests.e2e.fake_openai`` (standard library only). It listens on 127.0.0.1
on a free port and writes the port to ``$GK_PORT_FILE`` (how :mod:`tests.e2e.netns_main`
finds it). opencode reaches it through its bundled ``@ai-sdk/openai-compatible`` provider with
``options.baseURL`` ``http://127.0.0.1:PORT/v1`` (no package install, no network).

``$GK_SCRIPT`` names a JSON file: a list of turns, each either ``{"text": "..."}`` or
``{"tool_call": {"name": "bash", "input": {"command": "..."}}}`` (or ``"tool_calls": [...]``
for several calls in one turn). A ``POST /v1/chat/completions`` that offers tools is a turn of
the main conversation: the number of assistant messages it already carries is the index of the
turn to play (past the end: a final ``"done"``). Requests without tools (opencode's title
generation and other side questions) get a short text answer and do not advance the script.

Every request is appended to ``$GK_REQUEST_LOG`` as one JSON line (``method``, ``path``,
``status``, ``body``), unknown endpoints included, so a test can read what opencode sent back
(the ``tool`` messages carry a blocked call's error text).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.e2e.fake_base import FakeHandler, next_id, serve

MODEL = "fake-model"


def step_of(body: dict[str, Any]) -> int:
    """How many assistant turns the conversation in ``body`` already has."""
    messages = body.get("messages") or []
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")


def choose(body: dict[str, Any], script: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The text and tool calls to answer ``body`` with."""
    if not body.get("tools"):
        return "Gatekeeper test", []
    step = step_of(body)
    if step >= len(script):
        return "done", []
    turn = script[step]
    calls = list(turn.get("tool_calls", []))
    if "tool_call" in turn:
        calls.append(turn["tool_call"])
    text = str(turn.get("text", ""))
    return (text if text or calls else "done"), [
        {
            "id": next_id("call"),
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["input"])},
        }
        for c in calls
    ]


def _chunk(model: str, cid: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def sse(text: str, calls: list[dict[str, Any]], model: str) -> bytes:
    """A complete streamed Chat Completions response."""
    cid = next_id("chatcmpl")
    chunks = [_chunk(model, cid, {"role": "assistant", "content": ""}, None)]
    if text:
        chunks.append(_chunk(model, cid, {"content": text}, None))
    for index, call in enumerate(calls):
        chunks.append(_chunk(model, cid, {"tool_calls": [{"index": index, **call}]}, None))
    final = _chunk(model, cid, {}, "tool_calls" if calls else "stop")
    final["usage"] = USAGE
    chunks.append(final)
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def whole(text: str, calls: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The same response, not streamed."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": next_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": USAGE,
    }


class Handler(FakeHandler):
    name = "fake_openai"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions") and isinstance(body, dict):
            self._record(200, body)
            text, calls = choose(body, self.script)
            model = str(body.get("model") or MODEL)
            if body.get("stream"):
                self._send(200, sse(text, calls, model), "text/event-stream")
            else:
                self._json(200, whole(text, calls, model))
            return
        self._record(404, body)
        self._json(404, {"error": {"type": "not_found", "message": path}})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path.endswith("/models"):
            self._record(200, None)
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            return
        self._record(404, None)
        self._json(404, {"error": {"type": "not_found", "message": path}})


def main() -> int:
    return serve(Handler)


if __name__ == "__main__":
    raise SystemExit(main())
