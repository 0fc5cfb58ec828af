"""``gatekeeper approve``: the terminal app where a person answers pending requests.

Three layers:

* :class:`Queue` — the pending requests and the selection, pure, with the safety rule that a
  key never acts on a request the person has not had on screen for :data:`ARM_DELAY` seconds
  (a request that slides into place as another leaves, or arrives as a key is pressed, is
  shown first and only then answerable);
* :class:`Link` — the approver's connection to the daemon (subscribe, answer), reconnecting
  by itself when the daemon goes away;
* :func:`run_app` — the prompt_toolkit full-screen app: plain text that reads in 80x24 without
  colours (colour only underlines what the text already says).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.containers import ConditionalContainer
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.styles import Style

from gatekeeper.protocol import MAX_REPLY_LINE, decode_reply, encode_request
from gatekeeper.text import visible

ARM_DELAY = 0.75  # seconds a request must be on screen before a key may answer it
RECONNECT_EVERY = 1.0


# --------------------------------------------------------------------------------------------
# The queue (pure)


@dataclass(slots=True)
class Queue:
    """Pending requests in arrival order, the selected one, and since when it is shown."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    selected: str | None = None
    shown_since: float = 0.0

    def _select(self, key: str | None, now: float) -> None:
        if key != self.selected:
            self.selected = key
            self.shown_since = now

    def add(self, item: dict[str, Any], now: float) -> None:
        """A new request arrives; the selection stays where the person put it."""
        self.items[str(item["request"])] = item
        if self.selected is None:
            self._select(str(item["request"]), now)

    def remove(self, key: str, now: float) -> None:
        """A request left the queue (answered, timed out, cancelled)."""
        keys = list(self.items)
        if key not in self.items:
            return
        i = keys.index(key)
        del self.items[key]
        if self.selected == key:
            rest = list(self.items)
            self._select(rest[min(i, len(rest) - 1)] if rest else None, now)

    def clear(self, now: float) -> None:
        self.items.clear()
        self._select(None, now)

    def move(self, delta: int, now: float) -> None:
        keys = list(self.items)
        if not keys:
            return
        i = keys.index(self.selected) if self.selected in keys else 0
        self._select(keys[max(0, min(len(keys) - 1, i + delta))], now)

    def current(self) -> dict[str, Any] | None:
        return self.items.get(self.selected) if self.selected is not None else None

    def armed(self, now: float) -> bool:
        """May a key answer the selected request now?"""
        return self.selected is not None and now - self.shown_since >= ARM_DELAY


# --------------------------------------------------------------------------------------------
# The connection


class Link:
    """The approver's connection: subscribes, feeds the queue, sends answers, reconnects."""

    def __init__(self, socket_path: Path, on_change: Callable[[], None]) -> None:
        self.socket_path = socket_path
        self.queue = Queue()
        self.connected = False
        self.error: str | None = None
        self._on_change = on_change
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                self.error = str(exc) or type(exc).__name__
            self.connected = False
            self._writer = None
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the daemon went away"))
            self._waiting.clear()
            self.queue.clear(time.monotonic())
            self._on_change()
            await asyncio.sleep(RECONNECT_EVERY)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_unix_connection(
            str(self.socket_path), limit=MAX_REPLY_LINE
        )
        self._writer = writer
        try:
            writer.write(encode_request({"id": "subscribe", "op": "subscribe"}))
            await writer.drain()
            self.connected = True
            self.error = None
            self._on_change()
            while True:
                raw = await reader.readline()
                if not raw:
                    raise ConnectionError("the daemon closed the connection")
                self._handle(decode_reply(raw))
        finally:
            writer.close()

    def _handle(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if isinstance(rid, int) and rid in self._waiting:
            fut = self._waiting.pop(rid)
            if not fut.done():
                fut.set_result(msg)
            return
        event = msg.get("event")
        now = time.monotonic()
        if event == "pending":
            self.queue.add(msg, now)
        elif event == "resolved":
            self.queue.remove(str(msg.get("request")), now)
        elif "error" in msg and rid == "subscribe":
            self.error = msg["error"].get("message")
        self._on_change()

    async def answer(self, request: str, answer: str, **extra: Any) -> dict[str, Any]:
        """Send an answer; returns the daemon's reply (an ``error`` key when refused)."""
        if self._writer is None:
            raise ConnectionError("not connected to the daemon")
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        body = {"id": rid, "op": "answer", "request": request, "answer": answer}
        body.update({k: v for k, v in extra.items() if v is not None})
        self._writer.write(encode_request(body))
        await self._writer.drain()
        return await asyncio.wait_for(fut, 10)


# --------------------------------------------------------------------------------------------
# Rendering (pure: item → lines of text)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def request_lines(item: dict[str, Any], now: float) -> list[str]:
    """The details of one request, as the person should see them."""
    client = item.get("client") or {}
    who = f"pid {client.get('pid')}" + (f" {client['name']}" if client.get("name") else "")
    waited = now - float(item.get("created", now))
    left = float(item.get("expires_at", now)) - now
    decision = item.get("decision") or {}
    lines = [
        f"agent {visible(str(item.get('agent')))}   client {visible(who)}",
        f"cwd   {visible(str(item.get('cwd')))}",
        f"waited {duration(waited)}, {duration(left)} left before it is denied",
        "command:",
    ]
    lines.extend("  " + visible(part) for part in str(item.get("command", "")).split("\n"))
    lines.append("why it asks:")
    for part in decision.get("parts", []):
        rule = part.get("rule")
        why = (
            f'rule "{visible(rule["pattern"])}" → {rule["action"]} ({rule["source"]})'
            if rule
            else "no rule matches"
        )
        if part.get("note"):
            why += f"; {part['note']}"
        mark = "»" if part.get("decision") != "allow" else " "
        lines.append(
            f"{mark} {part.get('decision', '?'):<5} {part.get('permission', ''):<5} "
            f"{visible(str(part.get('subject', '')))}"
        )
        lines.append(f"        {why}")
    return lines


HELP = """\
gatekeeper approve: answer what your agents want to run.

  y        allow this request once
  a        allow always: edit the pattern, Enter to keep it while the daemon runs,
           Ctrl-S to also save it into the agent's file; Esc backs out
  n        reject: type a message for the agent (may be empty), Enter sends; Esc backs out
  j k ↑ ↓  move through the queue
  ?        this help (any key closes it)
  q        quit (pending requests keep waiting, then are denied)

Enter alone never approves anything. A request that just appeared, or just moved into place,
cannot be answered for a moment: look at it first.
"""


# --------------------------------------------------------------------------------------------
# The app


class ApproveApp:
    def __init__(self, socket_path: Path) -> None:
        self.link = Link(socket_path, self._changed)
        self.mode = "normal"  # normal | always | reject | help
        self.target: str | None = None  # the request a dialog answers
        self.flash = ""
        self.input = Buffer(multiline=False)
        self.app: Application[None] = self._build()

    def _changed(self) -> None:
        if self.mode in ("always", "reject") and self.target not in self.link.queue.items:
            self.flash = f"request {self.target} is no longer pending"
            self.mode, self.target = "normal", None
            self.input.reset()
        self.app.invalidate()

    # -- text ---------------------------------------------------------------------------------

    def _title(self) -> StyleAndTextTuples:
        q = self.link.queue
        state = "connected" if self.link.connected else "DAEMON NOT REACHABLE — reconnecting…"
        text = f" gatekeeper approve — {len(q.items)} pending — {state} "
        return [("class:title", text.ljust(200))]

    def _queue(self) -> StyleAndTextTuples:
        q = self.link.queue
        out: StyleAndTextTuples = []
        if not self.link.connected:
            where = self.link.socket_path
            out.append(
                (
                    "",
                    f"  no daemon at {where}"
                    + (f" ({self.link.error})" if self.link.error else "")
                    + "\n",
                )
            )
            return out
        if not q.items:
            out.append(("", "  nothing is waiting for you\n"))
            return out
        for key, item in q.items.items():
            sel = key == q.selected
            first = str(item.get("command", "")).split("\n", 1)[0]
            line = f"{'>' if sel else ' '} {key:<5} {item.get('agent')!s:<18.18} {visible(first)}"
            out.append(("class:selected" if sel else "", line[:200] + "\n"))
        return out

    def _details(self) -> StyleAndTextTuples:
        if self.mode == "help":
            return [("", HELP)]
        item = self.link.queue.current()
        if item is None:
            return []
        header = f"request {item['request']}\n"
        return [("class:heading", header), ("", "\n".join(request_lines(item, time.time())))]

    def _status(self) -> StyleAndTextTuples:
        if self.mode == "always":
            return [
                ("class:prompt", f" {self.target}: always allow — edit the pattern below\n"),
                ("", " Enter: for this session   Ctrl-S: also save to the agent file   Esc: back"),
            ]
        if self.mode == "reject":
            return [
                ("class:prompt", f" {self.target}: reject — a message for the agent below\n"),
                ("", " Enter: reject (the message may be empty)   Esc: back"),
            ]
        keys = " [y] once  [a] always  [n] reject  [j/k] move  [?] help  [q] quit"
        return [("class:flash", f" {self.flash}\n" if self.flash else "\n"), ("", keys)]

    # -- actions ------------------------------------------------------------------------------

    def _answerable(self) -> str | None:
        q = self.link.queue
        now = time.monotonic()
        if q.selected is None:
            self.flash = "nothing to answer"
            return None
        if not self.link.connected:
            self.flash = "not connected to the daemon"
            return None
        if not q.armed(now):
            self.flash = f"request {q.selected} just appeared: look at it first, then answer"
            return None
        return q.selected

    def _send(self, key: str, answer: str, **extra: Any) -> None:
        async def go() -> None:
            try:
                reply = await self.link.answer(key, answer, **extra)
            except (ConnectionError, OSError, TimeoutError) as exc:
                self.flash = f"not answered: {exc}"
            else:
                if "error" in reply:
                    self.flash = f"refused: {reply['error'].get('message')}"
                elif reply.get("save_error"):
                    self.flash = f"{key}: {answer}; NOT saved: {reply['save_error']}"
                elif reply.get("saved"):
                    self.flash = (
                        f'{key}: always "{reply.get("pattern")}", saved to {reply["saved"]}'
                    )
                else:
                    pattern = f' "{reply.get("pattern")}"' if answer == "always" else ""
                    self.flash = f"{key}: {answer}{pattern}"
            self.app.invalidate()

        self.app.create_background_task(go())

    def _build(self) -> Application[None]:
        kb = KeyBindings()
        normal = Condition(lambda: self.mode == "normal")
        dialog = Condition(lambda: self.mode in ("always", "reject"))
        helping = Condition(lambda: self.mode == "help")

        @kb.add("y", filter=normal)
        def _once(event: KeyPressEvent) -> None:
            key = self._answerable()
            if key is not None:
                self._send(key, "once")

        @kb.add("a", filter=normal)
        def _always(event: KeyPressEvent) -> None:
            key = self._answerable()
            if key is None:
                return
            item = self.link.queue.items[key]
            self.mode, self.target, self.flash = "always", key, ""
            suggestion = str(item.get("suggested_pattern", ""))
            self.input.set_document(Document(suggestion, len(suggestion)))
            event.app.layout.focus(self.input)

        @kb.add("n", filter=normal)
        def _reject(event: KeyPressEvent) -> None:
            key = self._answerable()
            if key is None:
                return
            self.mode, self.target, self.flash = "reject", key, ""
            self.input.reset()
            event.app.layout.focus(self.input)

        def _finish(event: KeyPressEvent, persist: bool) -> None:
            key, text = self.target, self.input.text
            mode = self.mode
            self.mode, self.target = "normal", None
            self.input.reset()
            event.app.layout.focus(self.queue_window)
            if key is None or key not in self.link.queue.items:
                self.flash = "that request is no longer pending"
                return
            if mode == "always":
                if not text.strip():
                    self.flash = "an empty pattern would match nothing useful: not sent"
                    return
                self._send(key, "always", pattern=text, persist=persist or None)
            else:
                self._send(key, "reject", message=text or None)

        @kb.add("enter", filter=dialog)
        def _enter(event: KeyPressEvent) -> None:
            _finish(event, persist=False)

        @kb.add("c-s", filter=dialog)
        def _save(event: KeyPressEvent) -> None:
            if self.mode == "always":
                _finish(event, persist=True)

        @kb.add("escape", filter=dialog, eager=True)
        def _back(event: KeyPressEvent) -> None:
            self.mode, self.target, self.flash = "normal", None, "backed out: nothing sent"
            self.input.reset()
            event.app.layout.focus(self.queue_window)

        @kb.add("j", filter=normal)
        @kb.add("down", filter=normal)
        def _down(event: KeyPressEvent) -> None:
            self.link.queue.move(1, time.monotonic())
            self.flash = ""

        @kb.add("k", filter=normal)
        @kb.add("up", filter=normal)
        def _up(event: KeyPressEvent) -> None:
            self.link.queue.move(-1, time.monotonic())
            self.flash = ""

        @kb.add("enter", filter=normal)
        def _enter_alone(event: KeyPressEvent) -> None:
            self.flash = "Enter alone does nothing here: y once, a always, n reject"

        @kb.add("?", filter=normal)
        def _help(event: KeyPressEvent) -> None:
            self.mode = "help"

        @kb.add("<any>", filter=helping)
        def _unhelp(event: KeyPressEvent) -> None:
            self.mode = "normal"

        @kb.add("q", filter=normal)
        @kb.add("c-c")
        def _quit(event: KeyPressEvent) -> None:
            event.app.exit()

        self.queue_window = Window(FormattedTextControl(self._queue, focusable=True), height=6)
        body = HSplit(
            [
                Window(FormattedTextControl(self._title), height=1),
                self.queue_window,
                Window(height=1, char="─"),
                Window(FormattedTextControl(self._details), wrap_lines=True),
                Window(height=1, char="─"),
                Window(FormattedTextControl(self._status), height=2),
                ConditionalContainer(Window(BufferControl(self.input), height=1), filter=dialog),
            ]
        )
        style = Style.from_dict(
            {
                "title": "reverse",
                "selected": "reverse",
                "heading": "bold",
                "prompt": "bold",
                "flash": "bold",
            }
        )
        return Application(
            layout=Layout(body, focused_element=self.queue_window),
            key_bindings=kb,
            style=style,
            full_screen=True,
            refresh_interval=0.5,
        )

    async def run(self) -> None:
        task = asyncio.get_running_loop().create_task(self.link.run())
        try:
            await self.app.run_async()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def run_app(socket_path: Path) -> int:
    asyncio.run(ApproveApp(socket_path).run())
    return 0
