"""The audit log: one JSON line per decision and per outcome, appended and flushed.

(Issue 5 adds the hash chain, rotation and the review command; this is the writer.)
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Append-only JSON lines, file mode 0600, each record flushed before the reply goes out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        stamped = {"time": datetime.now(UTC).isoformat(timespec="microseconds"), **record}
        line = json.dumps(stamped, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        self._file.close()
