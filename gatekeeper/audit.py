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
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
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


# --------------------------------------------------------------------------------------------
# Writing


class AuditLog:
    """The daemon's writer. Thread-safe; every record is one ``write()`` of one whole line.

    A record is on disk whole or not at all: a write cut short (a full disk) is truncated back
    before the error is raised, so the next record never lands on half a line. When the disk
    is full, writes fail (and the daemon refuses what it cannot record) until space returns;
    then they simply succeed again — notes that could not be written meanwhile (a recovery
    record, the daemon's start) go first. A failed rotation keeps the current file and is
    tried again later.
    """

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
        self._pending: list[dict[str, Any]] = []  # notes to write before the next record
        self._rotate_after = 0.0  # monotonic time before which no rotation is tried again
        self._needs_cut = False  # a failed write could not be cut back yet
        self.last_error: str | None = None  # the last write failure, until a write succeeds
        self.previous = "new"  # how the daemon that wrote the log before stopped
        self.unfinished: list[int] = []  # its decisions with no outcome (after a crash)
        # Called with each record's line (no newline) once it is written, under the lock, so
        # in seq order; must not block (gatekeeper.sinks queues it for sending).
        self.on_record: Callable[[bytes], None] | None = None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd, self._size = self._open(path)
        except OSError as exc:
            raise AuditError(f"{path}: cannot open the audit log: {exc.strerror}") from None
        self._recover()
        self._syncer: threading.Thread | None = None
        if fsync == "batch":
            self._syncer = threading.Thread(
                target=self._sync_loop, daemon=True, name="gatekeeper-audit-fsync"
            )
            self._syncer.start()

    def _open(self, path: Path) -> tuple[int, int]:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AuditError(
                f"{path}: the audit log is in use by another gatekeeper daemon; "
                "give this one its own --audit-log"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AuditError(f"{path}: not a regular file: the audit log must be a file")
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
        return fd, st.st_size

    # -- recovery -------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Find where the chain stands (also across rotation). What follows the last whole,
        sealed record of the live file — a line cut short by a crash or a full disk — is cut
        away (no disk space is needed for that) and a ``recovery`` note records its hash."""
        self.seq = 0
        self.prev = GENESIS
        for f in reversed(log_files(self.path)):
            try:
                found = _last_record(f)
            except OSError as exc:
                raise AuditError(f"{f}: cannot read the audit log: {exc.strerror}") from None
            if found is None:
                if f == self.path and self._size > 0:
                    raise AuditError(
                        f"{f}: no audit record in it: it is not a gatekeeper audit log "
                        "(or is damaged throughout); give the daemon another --audit-log"
                    )
                continue
            record, end = found
            self.seq = int(record["seq"])
            self.prev = str(record["hash"])
            if f == self.path:
                self._read_history(record)
                if end < self._size:
                    self._cut(end)
            break

    def _read_history(self, last: dict[str, Any]) -> None:
        """How the previous daemon stopped, and its runs that never got an outcome."""
        if last.get("kind") == "stop":
            self.previous = "stopped"
            return
        self.previous = "crashed"
        finished: set[int] = set()
        unfinished: list[int] = []
        with contextlib.suppress(OSError):
            # Backwards to the previous daemon's start: each outcome comes after its decision.
            for line in reversed(self.path.read_bytes().split(b"\n")):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict) or rec.get("kind") == "start":
                    if isinstance(rec, dict):
                        break
                    continue
                if rec.get("kind") == "outcome" and isinstance(rec.get("ref"), int):
                    finished.add(rec["ref"])
                elif rec.get("kind") == "decision" and (
                    rec.get("op") == "run" or rec.get("wait") is True
                ):
                    seq = rec.get("seq")
                    if isinstance(seq, int) and seq not in finished:
                        unfinished.append(seq)
        self.unfinished = sorted(unfinished)

    def _cut(self, end: int) -> None:
        with self.path.open("rb") as f:
            f.seek(end)
            removed = f.read()
        os.ftruncate(self._fd, end)
        self._size = end
        self._pending.append(
            {
                "kind": "recovery",
                "removed_sha256": line_hash(removed),
                "removed_bytes": len(removed),
                "note": "the end of the log was not a whole record (cut short by a crash or "
                "a full disk): it was removed",
            }
        )

    def begin(self, **fields: Any) -> None:
        """Note that a daemon starts writing (and how the one before it ended). Kept for the
        next record if it cannot be written now."""
        note: dict[str, Any] = {"kind": "start", "previous": self.previous, **fields}
        if self.previous == "crashed":
            note["unfinished"] = self.unfinished
        with self._lock:
            self._pending.append(note)
            with contextlib.suppress(AuditError):
                self._flush_pending()

    def end(self) -> None:
        """Note that the daemon stops cleanly (best effort)."""
        with contextlib.suppress(AuditError):
            self.write({"kind": "stop"})

    # -- writing --------------------------------------------------------------------------------

    def write(
        self,
        record: dict[str, Any],
        decision_json: bytes | None = None,
        members: bytes = b"",
    ) -> int:
        """Append one record; returns its ``seq``. Raises :class:`AuditError` if it cannot
        (then nothing of it is on disk).

        ``decision_json``, when given, is the already encoded decision and is spliced in as
        the ``decision`` field (saves encoding it twice); ``members`` are more fields already
        encoded (``"client":{…}``, the same for every record of a connection).
        """
        with self._lock:
            if self._closed:
                raise AuditError("the audit log is closed")
            self._flush_pending()
            return self._append(record, decision_json, members)

    def _flush_pending(self) -> None:
        while self._pending:
            self._append(self._pending[0], None, b"")
            self._pending.pop(0)

    def _append(self, record: dict[str, Any], decision_json: bytes | None, members: bytes) -> int:
        if self._needs_cut:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError as exc:
                raise self._failed(f"cannot repair the audit log: {exc.strerror}") from None
            self._needs_cut = False
        seq = self.seq + 1
        if self._size + 1 > self.max_bytes and self._size > 0:
            self._rotate()
        # Built as bytes: seq, time, prev first, then the record's own fields.
        pieces = [
            b'{"seq":%d,"time":"%s","prev":"%s"' % (seq, utc_now().encode(), self.prev.encode())
        ]
        if self._size == 0 and seq > 1:
            # The first record of a file after rotation says so (inside its hash), so a log
            # whose first lines were cut away cannot pass for a rotated one.
            pieces.append(b',"file_start":true')
        if record:
            pieces.append(b"," + _ENCODER.encode(record).encode("utf-8", "surrogatepass")[1:-1])
        if members:
            pieces.append(b"," + members)
        if decision_json is not None:
            pieces.append(b',"decision":' + decision_json)
        pieces.append(b"}")
        body, digest = seal(b"".join(pieces))
        line = body + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            self._undo()
            raise self._failed(f"cannot write the audit log: {exc.strerror}") from None
        if written != len(line):
            self._undo()
            raise self._failed("the disk took only part of a record (is it full?)")
        self._size += written
        self.seq = seq
        self.prev = digest
        self.last_error = None
        if self.on_record is not None:
            try:
                self.on_record(body)
            except Exception:  # the record is written: a sink's failure must not undo that
                logging.getLogger(__name__).exception("forwarding an audit record failed")
        if self.fsync == "always":
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                raise self._failed(f"cannot sync the audit log: {exc.strerror}") from None
        else:
            self._dirty = True
        return seq

    def _undo(self) -> None:
        """Cut the file back to its last whole record: a part of a line never stays."""
        try:
            os.ftruncate(self._fd, self._size)
            self._needs_cut = False
        except OSError:
            self._needs_cut = True  # the next write tries again first

    def _failed(self, why: str) -> AuditError:
        self.last_error = why
        return AuditError(f"{self.path}: {why}")

    def _rotate(self) -> None:
        """Move the live file aside as ``.N`` and start a new one. The new file is made
        (and locked) first: if that fails (no space, no inode), the live file stays and
        rotation is tried again in a minute."""
        if time.monotonic() < self._rotate_after:
            return
        files = log_files(self.path)
        numbers = [int(p.name.rsplit(".", 1)[1]) for p in files if p != self.path]
        target = self.path.with_name(f"{self.path.name}.{max(numbers, default=0) + 1}")
        fresh = self.path.with_name(f".{self.path.name}.new")
        try:
            with contextlib.suppress(FileNotFoundError):
                fresh.unlink()
            fd, size = self._open(fresh)
        except (OSError, AuditError) as exc:
            self._rotate_after = time.monotonic() + 60
            self.last_error = f"cannot rotate the audit log, writing on: {exc}"
            return
        try:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.rename(self.path, target)  # we still hold the lock on the old descriptor
            os.rename(fresh, self.path)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                fresh.unlink()
            if not self.path.exists() and target.exists():
                with contextlib.suppress(OSError):
                    os.rename(target, self.path)
            self._rotate_after = time.monotonic() + 60
            self.last_error = f"cannot rotate the audit log, writing on: {exc.strerror}"
            return
        old, self._fd, self._size = self._fd, fd, size
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


def _last_record(path: Path) -> tuple[dict[str, Any], int] | None:
    """The last whole, sealed record of a file and the offset where its line ends (after its
    newline); None when there is none. Reads backwards, 64 KiB at a time, at most 16 MiB."""
    size = path.stat().st_size
    with path.open("rb") as f:
        pos, data = size, b""
        while pos > 0 and size - pos < (16 << 20):
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            end = data.rfind(b"\n")
            while end >= 0:
                start = data.rfind(b"\n", 0, end) + 1
                if start == 0 and pos > 0:
                    break  # the line may begin before what was read: read further back
                raw = data[start:end]
                sealed = unseal(raw)
                if sealed is not None and line_hash(sealed[0]) == sealed[1]:
                    with contextlib.suppress(ValueError):
                        record = json.loads(raw)
                        if isinstance(record, dict) and isinstance(record.get("seq"), int):
                            return record, pos + end + 1
                if start == 0:
                    break
                end = start - 1
    return None


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
        if rec.get("kind") == "recovery" and isinstance(rec.get("removed_bytes"), int):
            v.notes.append(
                f"{line.where}: seq {seq}: the daemon started after a crash and removed "
                f"{rec['removed_bytes']} bytes that were not a whole record (sha256 "
                f"{str(rec.get('removed_sha256', ''))[:16]}…)"
            )
        if rec.get("kind") == "start" and rec.get("previous") == "crashed":
            unfinished = rec.get("unfinished") or []
            v.notes.append(
                f"{line.where}: seq {seq}: the daemon before this one crashed"
                + (f"; runs with no outcome: seq {', '.join(map(str, unfinished))}"
                   if unfinished else "")
            )  # fmt: skip
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
