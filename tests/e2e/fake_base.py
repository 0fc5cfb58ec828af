"""What the scripted fake model servers share: ids, the script, the request log, HTTP framing
and start-up (listen on loopback, announce the port in ``$GK_PORT_FILE``).

Each server (fake_anthropic, fake_openai, fake_responses) subclasses :class:`FakeHandler` with
its own routes and wire format, and runs ``serve(Handler)``.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

_lock = threading.Lock()
_counter = [0]


def next_id(prefix: str) -> str:
    with _lock:
        _counter[0] += 1
        return f"{prefix}_{os.getpid()}_{_counter[0]:04d}"


def load_script() -> list[dict[str, Any]]:
    """The scripted turns, from the JSON file named by ``$GK_SCRIPT`` (none: no turns)."""
    name = os.environ.get("GK_SCRIPT")
    if not name:
        return []
    turns: list[dict[str, Any]] = json.loads(Path(name).read_text(encoding="utf-8"))
    return turns


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name: ClassVar[str] = "fake"
    id_header: ClassVar[str | None] = None  # a response header carrying a request id
    script: ClassVar[list[dict[str, Any]]] = []
    log_path: ClassVar[Path | None] = None

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.name}: {format % args}\n")

    def _record(self, status: int, body: Any) -> None:
        """One line per request in ``$GK_REQUEST_LOG``, for the tests to read."""
        if self.log_path is None:
            return
        line = json.dumps(
            {"method": self.command, "path": self.path, "status": status, "body": body}
        )
        with _lock, self.log_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _read_body(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "zstd":
            return {"undecodable": "zstd", "bytes": len(raw)}
        if encoding == "gzip":
            raw = gzip.decompress(raw)
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
        if self.id_header is not None:
            self.send_header(self.id_header, next_id("req"))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")


def serve(handler: type[FakeHandler]) -> int:
    """Serve on a free loopback port until killed; the port goes to ``$GK_PORT_FILE``."""
    handler.script = load_script()
    log = os.environ.get("GK_REQUEST_LOG")
    handler.log_path = Path(log) if log else None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
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
