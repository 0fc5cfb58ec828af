"""The audit log: every decision and outcome on record, hash-chained, append-only.

Format (docs/audit.md): JSON lines. Each record has ``seq`` (1, 2, …, never reset), ``time``
(UTC, ISO 8601), ``prev`` (the previous record's ``hash``; 64 zeros for the first record),
``kind`` (``decision``, ``outcome``, ``recovery``), its fields, and last ``hash``: the SHA-256
(hex) of the line's bytes without the ``,"hash":"…"`` field. An edited line fails its own
hash; a removed or reordered line breaks ``prev``/``seq`` where the gap is.

The writer (:class:`AuditLog`) is the daemon's; it holds an exclusive lock on the log so that
no two daemons interleave one chain, writes each record with one ``write()`` before the reply
goes out, rotates by size into ``audit.jsonl.1``, ``.2``, … (the chain continues across files),
and after a crash terminates a torn last line and acknowledges it with a ``recovery`` record.
Reading and verifying (:func:`read_records`, :func:`verify`) are plain functions over files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gatekeeper.errors import GatekeeperError

GENESIS = "0" * 64
FsyncPolicy = Literal["always", "batch", "never"]
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 20
BATCH_SECONDS = 1.0


class AuditError(GatekeeperError):
    """The audit log cannot be written (or read); requests must not proceed unrecorded."""


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of some bytes."""
    return hashlib.sha256(line).hexdigest()


_HASH_FIELD = b',"hash":"'


def seal(body: bytes) -> tuple[bytes, str]:
    """Append the ``hash`` field to an encoded record (a JSON object): (line, its hash)."""
    digest = line_hash(body)
    return body[:-1] + _HASH_FIELD + digest.encode() + b'"}', digest


def unseal(line: bytes) -> tuple[bytes, str] | None:
    """(the record's bytes without its hash field, the hash it claims), or None."""
    i = line.rfind(_HASH_FIELD)
    if i < 0 or len(line) != i + len(_HASH_FIELD) + 64 + 2 or not line.endswith(b'"}'):
        return None
    claimed = line[i + len(_HASH_FIELD) : -2].decode("ascii", "replace")
    return line[:i] + b"}", claimed


def utc_now() -> str:
    """The time now, UTC, ISO 8601 with microseconds: ``2026-12-04T14:45:37.123456Z``."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0] = second
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"


_second: list[Any] = [-1, ""]  # the last second formatted, and its text (one per process)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Files of one log


def log_files(path: Path) -> list[Path]:
    """The rotated files oldest first, then the live file (those that exist)."""
    rotated: list[tuple[int, Path]] = []
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            m = pattern.match(entry.name)
            if m:
                rotated.append((int(m.group(1)), entry))
    files = [p for _, p in sorted(rotated)]
    if path.exists():
        files.append(path)
    return files


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """(the last complete line or None, whether a torn line follows it).

    Reads backwards in 64 KiB steps until the last complete line is whole: bounded by the
    newline before it, or by the start of the file.
    """
    size = path.stat().st_size
    if size == 0:
        return None, False
    with path.open("rb") as f:
        pos, data = size, b""
        while True:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            torn = not data.endswith(b"\n")
            end = data.rfind(b"\n")  # where the last complete line ends
            while end >= 0:
                start = data.rfind(b"\n", 0, end) + 1  # 0 when no newline before it
                if start == 0 and pos > 0:
                    break  # the line may begin before what was read: read further back
                if start < end:
                    return data[start:end], torn
                if start == 0:
                    break
                end = start - 1  # a blank line: look at the one before it
            if pos == 0:
                return None, torn


# --------------------------------------------------------------------------------------------
# Writing


class AuditLog:
    """The daemon's writer. Thread-safe; every record is one ``write()`` of one whole line."""

    def __init__(
        self,
        path: Path,
        *,
        fsync: FsyncPolicy = "batch",
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            raise AuditError(f"{path}: cannot open the audit log: {exc.strerror}") from None
        self._recover()
        self._syncer: threading.Thread | None = None
        if fsync == "batch":
            self._syncer = threading.Thread(
                target=self._sync_loop, daemon=True, name="gatekeeper-audit-fsync"
            )
            self._syncer.start()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AuditError(
                f"{self.path}: the audit log is in use by another gatekeeper daemon; "
                "give this one its own --audit-log"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AuditError(f"{self.path}: not a regular file: the audit log must be a file")
        os.fchmod(fd, 0o600)
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def _recover(self) -> None:
        """Find where the chain stands (also across rotation); acknowledge a torn tail."""
        self.seq = 0
        self.prev = GENESIS
        torn = False
        for f in reversed(log_files(self.path)):
            try:
                last, torn_here = _last_line(f)
            except OSError as exc:
                raise AuditError(f"{f}: cannot read the audit log: {exc.strerror}") from None
            if f == self.path:
                torn = torn_here
            if last is None:
                continue
            try:
                record = json.loads(last)
                self.seq = int(record["seq"])
                self.prev = str(record["hash"])
            except (ValueError, KeyError, TypeError):
                raise AuditError(
                    f"{f}: its last complete line is not an audit record; run "
                    "`gatekeeper audit verify` and move the damaged log aside"
                ) from None
            break
        if torn:
            torn_bytes = self._torn_tail()
            os.write(self._fd, b"\n")
            self._size += 1
            self.write(
                {
                    "kind": "recovery",
                    "torn_sha256": line_hash(torn_bytes),
                    "torn_bytes": len(torn_bytes),
                    "note": "the previous line was cut short by a crash and is skipped",
                }
            )

    def _torn_tail(self) -> bytes:
        with self.path.open("rb") as f:
            data = f.read()
        return data[data.rfind(b"\n") + 1 :]

    def write(
        self,
        record: dict[str, Any],
        decision_json: bytes | None = None,
        members: bytes = b"",
    ) -> int:
        """Append one record; returns its ``seq``. Raises :class:`AuditError` if it cannot.

        ``decision_json``, when given, is the already encoded decision and is spliced in as
        the ``decision`` field (saves encoding it twice); ``members`` are more fields already
        encoded (``"client":{…}``, the same for every record of a connection).
        """
        with self._lock:
            if self._closed:
                raise AuditError("the audit log is closed")
            seq = self.seq + 1
            if self._size + 1 > self.max_bytes and self._size > 0:
                self._rotate()
            # Built as bytes: seq, time, prev first, then the record's own fields.
            pieces = [
                b'{"seq":%d,"time":"%s","prev":"%s"' % (seq, utc_now().encode(), self.prev.encode())
            ]
            if self._size == 0 and seq > 1:
                # The first record of a file after rotation says so (inside its hash), so a
                # log whose first lines were cut away cannot pass for a rotated one.
                pieces.append(b',"file_start":true')
            if record:
                pieces.append(b"," + _ENCODER.encode(record).encode("utf-8", "surrogatepass")[1:-1])
            if members:
                pieces.append(b"," + members)
            if decision_json is not None:
                pieces.append(b',"decision":' + decision_json)
            pieces.append(b"}")
            body = b"".join(pieces)
            body, digest = seal(body)
            try:
                written = os.write(self._fd, body + b"\n")
            except OSError as exc:
                raise AuditError(
                    f"{self.path}: cannot write the audit log: {exc.strerror}"
                ) from None
            if written != len(body) + 1:
                raise AuditError(f"{self.path}: short write to the audit log (disk full?)")
            self._size += written
            self.seq = seq
            self.prev = digest
            if self.fsync == "always":
                os.fdatasync(self._fd)
            else:
                self._dirty = True
            return seq

    def _rotate(self) -> None:
        files = log_files(self.path)
        numbers = [int(p.name.rsplit(".", 1)[1]) for p in files if p != self.path]
        target = self.path.with_name(f"{self.path.name}.{max(numbers, default=0) + 1}")
        os.fsync(self._fd)
        os.rename(self.path, target)  # we still hold the lock on the old file's descriptor
        old = self._fd
        self._open()
        os.close(old)
        rotated = [p for p in log_files(self.path) if p != self.path]
        for stale in rotated[: max(0, len(rotated) - self.keep)]:
            with contextlib.suppress(OSError):
                stale.unlink()

    def _sync_loop(self) -> None:
        while not self._closed:
            time.sleep(BATCH_SECONDS)
            self.sync()

    def sync(self) -> None:
        """Flush written records to the disk, without holding up writers meanwhile."""
        with self._lock:
            if not self._dirty or self._closed:
                return
            fd = os.dup(self._fd)  # rotation may close self._fd while we sync
            self._dirty = False
        try:
            with contextlib.suppress(OSError):
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sync()
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)


# --------------------------------------------------------------------------------------------
# Reading and verifying


@dataclass(frozen=True, slots=True)
class Line:
    file: Path
    number: int  # 1-based within its file
    raw: bytes
    record: dict[str, Any] | None  # None: not a complete JSON record (torn or damaged)
    complete: bool  # ended with a newline

    @property
    def where(self) -> str:
        return f"{self.file}:{self.number}"


def read_lines(path: Path) -> Iterator[Line]:
    """Every line of the log and its rotated files, oldest first."""
    for f in log_files(path):
        try:
            data = f.read_bytes()
        except OSError as exc:
            raise AuditError(f"{f}: cannot read: {exc.strerror}") from None
        lines = data.split(b"\n")
        last_complete = data.endswith(b"\n")
        for i, raw in enumerate(lines, 1):
            is_last = i == len(lines)
            if is_last and raw == b"":
                break
            complete = not is_last or last_complete
            record: dict[str, Any] | None = None
            with contextlib.suppress(ValueError):
                obj = json.loads(raw)
                if isinstance(obj, dict) and "seq" in obj:
                    record = obj
            yield Line(f, i, raw, record, complete)


def read_records(path: Path) -> Iterator[tuple[Line, dict[str, Any]]]:
    """The readable records, oldest first; torn or damaged lines are skipped."""
    for line in read_lines(path):
        if line.record is not None:
            yield line, line.record


@dataclass(slots=True)
class Verdict:
    ok: bool = True
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)  # the first one is what broke the chain
    notes: list[str] = field(default_factory=list)  # crashes acknowledged, rotation gaps


def verify(lines: Iterable[Line]) -> Verdict:
    """Check the chain: every ``prev`` is the hash of the line before, ``seq`` counts up by one.

    A torn line (cut short by a crash) is acceptable when it is the last line of the log, or
    when the next record is a ``recovery`` record naming its hash; anything else fails at the
    first bad line. When older files were rotated away, the chain starts at the first record
    found, and that is noted.
    """
    v = Verdict()
    prev_hash: str | None = None  # None: before the first record
    prev_seq: int | None = None
    pending_torn: Line | None = None
    all_lines = list(lines)
    for idx, line in enumerate(all_lines):
        rec = line.record
        if rec is None or not line.complete:
            is_final = idx == len(all_lines) - 1
            if is_final and not line.complete:
                v.notes.append(
                    f"{line.where}: torn last line (the daemon was killed while "
                    "writing it): skipped"
                )
                continue
            pending_torn = line
            continue
        if pending_torn is not None:
            if rec.get("kind") != "recovery" or rec.get("torn_sha256") != line_hash(
                pending_torn.raw
            ):
                v.ok = False
                v.problems.append(f"{pending_torn.where}: not a valid audit record")
                return v
            v.notes.append(
                f"{pending_torn.where}: torn line from a crash, acknowledged by the "
                f"recovery record at {line.where}"
            )
            pending_torn = None
        seq = rec.get("seq")
        prev = rec.get("prev")
        if not isinstance(seq, int) or not isinstance(prev, str):
            v.ok = False
            v.problems.append(f"{line.where}: record without seq/prev")
            return v
        sealed = unseal(line.raw)
        if sealed is None or line_hash(sealed[0]) != sealed[1]:
            v.ok = False
            v.problems.append(
                f"{line.where}: seq {seq}: the record does not match its hash: it was edited"
            )
            return v
        if prev_hash is None:
            if prev != GENESIS and rec.get("file_start") is not True:
                v.ok = False
                v.problems.append(
                    f"{line.where}: seq {seq}: the log starts in the middle of the chain, not "
                    "at a file boundary: records before it were removed"
                )
                return v
            if prev != GENESIS:
                v.notes.append(
                    f"{line.where}: the chain starts at seq {seq}; earlier records "
                    "were rotated away"
                )
        else:
            if prev != prev_hash:
                v.ok = False
                v.problems.append(
                    f"{line.where}: seq {seq}: prev does not match the line before it: "
                    "a record was edited, removed or reordered at or just before this line"
                )
                return v
            if prev_seq is not None and seq != prev_seq + 1:
                v.ok = False
                v.problems.append(f"{line.where}: seq {seq} follows seq {prev_seq}")
                return v
        if v.first_seq is None:
            v.first_seq = seq
        prev_hash = sealed[1]
        prev_seq = seq
        v.records += 1
        v.last_seq = seq
        v.head = prev_hash
    if pending_torn is not None:
        v.ok = False
        v.problems.append(f"{pending_torn.where}: not a valid audit record")
    return v
