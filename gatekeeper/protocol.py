"""The socket protocol, version 1, without any I/O (bytes in → requests; replies → bytes).

Framing: one JSON object per line, UTF-8, ``\\n``-terminated, at most 1 MiB a line. Every
request has ``"v": 1``, an ``"id"`` (string or integer) and an ``"op"``. See docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MAX_LINE = 1 << 20  # bytes, the newline not counted (requests)
MAX_REPLY_LINE = 4 << 20  # what a client accepts for one reply or event line
MAX_TIMEOUT = 7 * 24 * 3600.0  # seconds: a longer `timeout` is refused

RequestId = str | int | None


class ProtocolError(Exception):
    """A request that cannot be served; carries the error code and the id to reply to."""

    def __init__(self, code: str, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def reply(self) -> dict[str, Any]:
        return error_reply(self.request_id, self.code, self.message)


def error_reply(request_id: RequestId, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "error": {"code": code, "message": message}}


def event(request_id: RequestId, name: str, **body: Any) -> dict[str, Any]:
    """One event of a run (or of a subscription): ``{"id": …, "event": name, …}``."""
    return {"id": request_id, "event": name, **body}


def encode_request(fields: Mapping[str, Any]) -> bytes:
    """A client's request line: the fields with ``"v": 1`` added (clients use this)."""
    return encode({"v": VERSION, **fields})


def decode_reply(line: bytes) -> dict[str, Any]:
    """One reply or event line, as a client reads it (:class:`LineDecoder` frames them)."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a reply is a JSON object")
    return message


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_id(request_id: RequestId) -> bytes:
    """A request id as JSON."""
    if type(request_id) is int:  # the common case, and not a bool
        return b"%d" % request_id
    return _ENCODER.encode(request_id).encode("utf-8", "surrogatepass")


def encode(message: Mapping[str, Any]) -> bytes:
    """One reply or event as a line of JSON."""
    return _ENCODER.encode(message).encode("utf-8", "surrogatepass") + b"\n"


class LineDecoder:
    """Splits a byte stream into lines, refusing any line longer than ``MAX_LINE``."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield complete lines (without the newline); raise ``too_large`` past the limit."""
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self._limit:
                    self._buf.clear()
                    raise ProtocolError("too_large", f"line longer than {self._limit} bytes")
                return
            if nl > self._limit:
                self._buf.clear()
                raise ProtocolError("too_large", f"line longer than {self._limit} bytes")
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            yield line

    @property
    def pending(self) -> int:
        return len(self._buf)


# --------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    op: str


@dataclass(frozen=True, slots=True)
class Check(Request):
    agent: str | None
    command: str | None
    permission: str | None
    path: str | None
    cwd: str | None
    wait: bool = False  # on ask: wait for a human's answer (extension)
    root: str | None = None  # the project root (extension; the cwd when not given)
    context: dict[str, str] | None = None  # the harness's ids, kept in the audit (extension)


@dataclass(frozen=True, slots=True)
class Run(Request):
    agent: str | None
    command: str
    cwd: str
    env: dict[str, str] | None
    timeout: float | None
    stdin: bytes | None  # from "stdin" (text) or "stdin_base64" (any bytes)
    root: str | None = None  # the project root (extension; the cwd when not given)
    context: dict[str, str] | None = None  # the harness's ids, kept in the audit (extension)


@dataclass(frozen=True, slots=True)
class Cancel(Request):
    target: str | int


@dataclass(frozen=True, slots=True)
class Simple(Request):
    """status, reload, subscribe, pending: no fields of their own."""


@dataclass(frozen=True, slots=True)
class Answer(Request):
    request: str
    answer: str  # once | always | reject
    pattern: str | None
    message: str | None
    persist: bool = field(default=False)


OPS = ("check", "run", "cancel", "status", "reload", "subscribe", "pending", "answer")
ANSWERS = ("once", "always", "reject")


def _field(
    obj: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    rid: RequestId,
    *,
    required: bool = True,
) -> Any:
    if name not in obj or obj[name] is None:
        if required:
            raise ProtocolError("bad_request", f"missing field {name!r}", rid)
        return None
    value = obj[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError("bad_request", f"field {name!r} has the wrong type", rid)
    if not isinstance(value, kind):
        raise ProtocolError("bad_request", f"field {name!r} has the wrong type", rid)
    return value


def _utf8(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MAX_CONTEXT_FIELDS = 16
MAX_CONTEXT_NAME = 64
MAX_CONTEXT_VALUE = 1024


def _directory(obj: Mapping[str, Any], name: str, rid: RequestId, *, required: bool = True) -> Any:
    """``cwd`` or ``root``: an absolute path."""
    value = _text(obj, name, rid, required=required)
    if value is not None and not value.startswith("/"):
        raise ProtocolError("bad_request", f"field {name!r} must be an absolute path", rid)
    return value


def _context(obj: Mapping[str, Any], rid: RequestId) -> dict[str, str] | None:
    """``context``: what the harness knows of the request (its name, session and tool-call
    ids, permission mode …), kept in the audit record. A flat object of short strings."""
    ctx = _field(obj, "context", dict, rid, required=False)
    if ctx is None:
        return None
    if len(ctx) > MAX_CONTEXT_FIELDS or not all(
        isinstance(k, str)
        and isinstance(v, str)
        and 0 < len(k) <= MAX_CONTEXT_NAME
        and len(v) <= MAX_CONTEXT_VALUE
        and "\x00" not in k + v
        and _utf8(k)
        and _utf8(v)
        for k, v in ctx.items()
    ):
        raise ProtocolError(
            "bad_request",
            f"field 'context' must map at most {MAX_CONTEXT_FIELDS} names (up to "
            f"{MAX_CONTEXT_NAME} characters) to strings (up to {MAX_CONTEXT_VALUE}), "
            "valid UTF-8 without NUL bytes",
            rid,
        )
    return dict(ctx)


def _text(obj: Mapping[str, Any], name: str, rid: RequestId, *, required: bool = True) -> Any:
    value = _field(obj, name, str, rid, required=required)
    if isinstance(value, str):
        if "\x00" in value:
            raise ProtocolError("bad_request", f"field {name!r} contains a NUL byte", rid)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
                raise ProtocolError(
                    "bad_request", f"field {name!r} is not valid UTF-8", rid
                ) from None
    return value


def parse_request(line: bytes) -> Request:
    """Validate one line into a typed request, or raise :class:`ProtocolError`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_request", f"not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_request", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "a request is a JSON object")
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ProtocolError("bad_request", "field 'id' must be a string or an integer", None)
    if isinstance(rid, str) and (len(rid) > 200 or "\x00" in rid or not _utf8(rid)):
        raise ProtocolError(
            "bad_request", "field 'id' must be valid UTF-8 text of at most 200 characters", None
        )
    if isinstance(rid, int) and abs(rid) >= 1 << 63:
        raise ProtocolError("bad_request", "field 'id' must fit in 64 bits", None)
    v = obj.get("v")
    if v != VERSION or isinstance(v, bool):
        raise ProtocolError(
            "unsupported_version",
            f'protocol version {v!r} is not supported; send "v": {VERSION}',
            rid,
        )
    op = obj.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_request", "missing field 'op'", rid)
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {op!r}; ops: {', '.join(OPS)}", rid)
    if op == "check":
        command = _text(obj, "command", rid, required=False)
        path = _text(obj, "path", rid, required=False)
        permission = _text(obj, "permission", rid, required=False)
        if (command is None) == (path is None):
            raise ProtocolError("bad_request", "check takes either 'command' or 'path'", rid)
        if path is not None and permission not in ("edit", "write"):
            raise ProtocolError(
                "bad_request", "a path check needs 'permission': edit or write", rid
            )
        return Check(
            rid,
            op,
            _text(obj, "agent", rid, required=False),
            command,
            permission,
            path,
            _directory(obj, "cwd", rid, required=False),
            bool(_field(obj, "wait", bool, rid, required=False)),
            _directory(obj, "root", rid, required=False),
            _context(obj, rid),
        )
    if op == "run":
        env = _field(obj, "env", dict, rid, required=False)
        if env is not None:
            for k, val in env.items():
                if (
                    not isinstance(val, str)
                    or not k
                    or "=" in k
                    or "\x00" in k
                    or "\x00" in val
                    or not (_utf8(k) and _utf8(val))
                ):
                    raise ProtocolError(
                        "bad_request",
                        "field 'env' must map names to strings "
                        "(no '=' in names, no NUL bytes, valid UTF-8)",
                        rid,
                    )
        timeout = _field(obj, "timeout", (int, float), rid, required=False)
        if timeout is not None:
            try:
                seconds = float(timeout)  # an integer of 400 digits does not fit a float
            except OverflowError:
                seconds = math.inf
            if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
                raise ProtocolError(
                    "bad_request",
                    f"field 'timeout' must be a number of seconds, above 0 and at most "
                    f"{MAX_TIMEOUT:g}",
                    rid,
                )
            timeout = seconds
        stdin_text = _text(obj, "stdin", rid, required=False)
        stdin_b64 = _field(obj, "stdin_base64", str, rid, required=False)
        if stdin_text is not None and stdin_b64 is not None:
            raise ProtocolError("bad_request", "give 'stdin' or 'stdin_base64', not both", rid)
        stdin: bytes | None = stdin_text.encode() if stdin_text is not None else None
        if stdin_b64 is not None:
            try:
                stdin = base64.b64decode(stdin_b64, validate=True)
            except (ValueError, binascii.Error):
                raise ProtocolError(
                    "bad_request", "field 'stdin_base64' is not base64", rid
                ) from None
        cwd = _directory(obj, "cwd", rid)
        return Run(
            rid,
            op,
            _text(obj, "agent", rid, required=False),
            _text(obj, "command", rid),
            cwd,
            env,
            float(timeout) if timeout is not None else None,
            stdin,
            _directory(obj, "root", rid, required=False),
            _context(obj, rid),
        )
    if op == "cancel":
        target = obj.get("target")
        if (
            isinstance(target, bool)
            or not isinstance(target, (str, int))
            or (isinstance(target, str) and not _utf8(target))
        ):
            raise ProtocolError("bad_request", "field 'target' must be the id of a run", rid)
        return Cancel(rid, op, target)
    if op == "answer":
        answer = _text(obj, "answer", rid)
        if answer not in ANSWERS:
            raise ProtocolError("bad_request", "field 'answer' must be once, always or reject", rid)
        persist = _field(obj, "persist", bool, rid, required=False)
        return Answer(
            rid,
            op,
            _text(obj, "request", rid),
            answer,
            _text(obj, "pattern", rid, required=False),
            _text(obj, "message", rid, required=False),
            bool(persist),
        )
    return Simple(rid, op)
