"""A scripted stand-in for the OpenAI Responses API, for driving the real Codex CLI.

Run as ``python -m tests.e2e.fake_responses`` (standard library only). It listens on
127.0.0.1 on a free port and writes the port to ``$GK_PORT_FILE`` (how
:mod:`tests.e2e.netns_main` finds it).

``$GK_SCRIPT`` names a JSON file: a list of turns, each either ``{"text": "..."}``,
``{"call": {"name": "exec_command", "arguments": {"cmd": "..."}}}`` (a ``function_call``
item; ``arguments`` may be an object or an already encoded string), ``{"custom": {"name":
"apply_patch", "input": "*** Begin Patch ..."}}`` (a freeform ``custom_tool_call`` item), or
``"calls"`` / ``"customs"`` lists for several in one turn. A ``POST /v1/responses`` that offers
tools is a step of the main conversation: the step to play is one past the highest turn whose
calls the request's ``input`` already carries (every call id made here names its turn), so
retries replay the same turn. Past the end of the script, and for requests without tools
(titles, summaries, other side questions), the answer is a short final message.

Every request is appended to ``$GK_REQUEST_LOG`` as one JSON line (``method``, ``path``,
``status``, ``body``), unknown endpoints included, so a test can read what Codex sent back
(``function_call_output`` items and their text).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.e2e.fake_base import FakeHandler, next_id, serve

MODEL = "gpt-5.1-codex"
CALL_ID = re.compile(r"^call_t(\d+)_")


def items_for(turn: dict[str, Any], step: int) -> list[dict[str, Any]]:
    """The output items of scripted turn number ``step``."""
    items: list[dict[str, Any]] = []
    if "text" in turn:
        items.append(message(str(turn["text"])))
    calls = list(turn.get("calls", []))
    if "call" in turn:
        calls.append(turn["call"])
    customs = list(turn.get("customs", []))
    if "custom" in turn:
        customs.append(turn["custom"])
    for index, call in enumerate(calls):
        arguments = call["arguments"]
        items.append(
            {
                "type": "function_call",
                "id": next_id("fc"),
                "call_id": f"call_t{step}_{index}",
                "name": call["name"],
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                "status": "completed",
            }
        )
    for index, custom in enumerate(customs, start=len(calls)):
        items.append(
            {
                "type": "custom_tool_call",
                "id": next_id("ctc"),
                "call_id": f"call_t{step}_{index}",
                "name": custom["name"],
                "input": custom["input"],
                "status": "completed",
            }
        )
    return items or [message("done")]


def message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": next_id("msg"),
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def step_of(body: dict[str, Any]) -> int:
    """The script step a request asks for: one past the last turn its input has calls of."""
    played = -1
    for item in body.get("input") or []:
        if not isinstance(item, dict):
            continue
        match = CALL_ID.match(str(item.get("call_id") or ""))
        if match:
            played = max(played, int(match.group(1)))
    return played + 1


def choose(body: dict[str, Any], script: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to answer ``body`` with."""
    if not body.get("tools"):
        return [message("Gatekeeper test")]
    step = step_of(body)
    if step < len(script):
        return items_for(script[step], step)
    return [message("done")]


def sse(items: list[dict[str, Any]], model: str) -> bytes:
    """A complete streamed Responses API answer carrying ``items``."""
    rid = next_id("resp")
    base: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": 1_700_000_000,
        "model": model,
        "output": [],
        "status": "in_progress",
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": 0, "response": base}
    ]
    for index, item in enumerate(items):
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress"},
            }
        )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append(
        {
            "type": "response.completed",
            "response": {
                **base,
                "status": "completed",
                "output": items,
                "usage": {
                    "input_tokens": 10,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 5,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 15,
                },
            },
        }
    )
    out = []
    for seq, event in enumerate(events):
        event.setdefault("sequence_number", seq)
        out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    return b"".join(out)


class Handler(FakeHandler):
    name = "fake_responses"
    id_header = "x-request-id"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.endswith("/responses") and isinstance(body, dict):
            self._record(200, body)
            items = choose(body, self.script)
            self._send(200, sse(items, str(body.get("model") or MODEL)), "text/event-stream")
            return
        self._record(404, body)
        self._json(404, {"error": {"type": "not_found", "message": path}})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        self._record(404, None)
        self._json(404, {"error": {"type": "not_found", "message": path}})


def main() -> int:
    return serve(Handler)


if __name__ == "__main__":
    raise SystemExit(main())
