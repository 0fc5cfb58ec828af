"""The audit log writer and the chain check, on real files."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest

from gatekeeper.audit import GENESIS, AuditError, AuditLog, log_files, read_lines, verify


def write_n(path: Path, n: int, **kwargs: object) -> None:
    log = AuditLog(path, **kwargs)  # type: ignore[arg-type]
    try:
        for i in range(n):
            log.write({"kind": "decision", "command": f"echo {i}"}, b'{"decision":"allow"}')
    finally:
        log.close()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_records_are_chained_and_numbered(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 5)
    records = [json.loads(x) for x in lines_of(path)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    assert records[2]["decision"] == {"decision": "allow"}
    assert records[2]["time"].endswith("Z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    v = verify(read_lines(path))
    assert (v.ok, v.records, v.first_seq, v.last_seq) == (True, 5, 1, 5)


def test_a_restarted_writer_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 3)
    write_n(path, 2)
    assert [json.loads(x)["seq"] for x in lines_of(path)] == [1, 2, 3, 4, 5]
    assert verify(read_lines(path)).ok


def test_one_edited_character_names_that_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 6)
    lines = lines_of(path)
    lines[3] = lines[3].replace(b"echo 3", b"echo 4")
    path.write_bytes(b"\n".join(lines) + b"\n")
    v = verify(read_lines(path))
    assert not v.ok
    assert v.problems[0].startswith(f"{path}:4: seq 4:")
    assert "edited" in v.problems[0]


def test_a_removed_line_is_found_where_the_gap_is(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 6)
    lines = lines_of(path)
    del lines[2]
    path.write_bytes(b"\n".join(lines) + b"\n")
    v = verify(read_lines(path))
    assert not v.ok
    assert v.problems[0].startswith(f"{path}:3:")


def test_reordered_lines_fail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 6)
    lines = lines_of(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"\n".join(lines) + b"\n")
    v = verify(read_lines(path))
    assert not v.ok
    assert v.problems[0].startswith(f"{path}:2:")


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 40, max_bytes=1500)
    files = log_files(path)
    assert len(files) > 3
    assert files[-1] == path
    assert [f.name for f in files[:-1]] == [f"audit.jsonl.{i}" for i in range(1, len(files))]
    v = verify(read_lines(path))
    assert (v.ok, v.records, v.last_seq) == (True, 40, 40)
    # an edit in a rotated file is found there
    victim = files[1]
    lines = lines_of(victim)
    lines[0] = lines[0].replace(b'"echo', b'"ECHO')
    victim.write_bytes(b"\n".join(lines) + b"\n")
    v = verify(read_lines(path))
    assert not v.ok
    assert v.problems[0].startswith(f"{victim}:1:")


def test_old_rotated_files_are_dropped_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 60, max_bytes=1500, keep=2)
    assert len(log_files(path)) == 3
    v = verify(read_lines(path))
    assert v.ok
    assert v.last_seq == 60
    assert any("rotated away" in n for n in v.notes)


def test_torn_last_line_is_noted_then_acknowledged_on_restart(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 3)
    with path.open("ab") as f:
        f.write(b'{"seq":4,"time":"2026-11-27T00:00:00Z","prev":"ab')  # killed mid-write
    v = verify(read_lines(path))
    assert v.ok
    assert any("torn last line" in n for n in v.notes)
    write_n(path, 2)  # the daemon restarts
    raw = lines_of(path)
    assert all(x.startswith(b'{"seq":') and x.endswith(b"}") for x in raw)  # no half line left
    records = [json.loads(x) for x in raw]
    kinds = [r["kind"] for r in records]
    assert kinds == ["decision"] * 3 + ["recovery"] + ["decision"] * 2
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[3]["removed_bytes"] == len(b'{"seq":4,"time":"2026-11-27T00:00:00Z","prev":"ab')
    v = verify(read_lines(path))
    assert v.ok, v.problems
    assert any("removed 49 bytes" in n for n in v.notes)


def test_a_damaged_line_in_the_middle_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 4)
    lines = lines_of(path)
    lines[1] = lines[1][:40]
    path.write_bytes(b"\n".join(lines) + b"\n")
    v = verify(read_lines(path))
    assert not v.ok
    assert v.problems[0].startswith(f"{path}:2:")


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path)
    try:
        with pytest.raises(AuditError, match="in use by another gatekeeper daemon"):
            AuditLog(path)
    finally:
        first.close()


@pytest.mark.parametrize("policy", ["always", "batch", "never"])
def test_every_fsync_policy_writes_the_same_chain(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 3, fsync=policy)
    assert verify(read_lines(path)).records == 3


def test_a_log_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()
    with pytest.raises(AuditError, match="cannot open the audit log"):
        AuditLog(tmp_path / "audit.jsonl")


def test_garbage_at_the_end_stops_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"this is not an audit log\n")
    with pytest.raises(AuditError, match="no audit record in it"):
        AuditLog(path)
    assert os.path.getsize(path) == len(b"this is not an audit log\n")


def test_the_log_must_be_a_regular_file() -> None:
    with pytest.raises(AuditError, match="not a regular file"):
        AuditLog(Path("/dev/null"))


def test_lines_cut_from_the_top_of_an_unrotated_log_fail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_n(path, 5)
    path.write_bytes(b"\n".join(lines_of(path)[2:]) + b"\n")
    v = verify(read_lines(path))
    assert not v.ok
    assert v.problems[0].startswith(f"{path}:1: seq 3:")
    assert "removed" in v.problems[0]


def test_until_a_date_means_the_end_of_that_day() -> None:
    from datetime import datetime

    from gatekeeper.commands.audit import make_filter

    flt = make_filter(None, "2026-11-27", None, None, None)
    assert flt.until == datetime.fromisoformat("2026-11-28T00:00:00+00:00")


def test_recovery_finds_the_last_record_behind_a_long_torn_tail(tmp_path: Path) -> None:
    """The last complete line straddles the 64 KiB read window that ends at a torn tail."""
    path = tmp_path / "audit.jsonl"
    write_n(path, 300)
    last = lines_of(path)[-1]
    with path.open("ab") as f:
        f.write(b"x" * (65536 - len(last) // 2))  # torn: killed while writing a huge record
    write_n(path, 1)  # the restarted daemon must find seq 300 and go on
    records = [json.loads(x) for x in lines_of(path) if x.startswith(b'{"seq"')]
    assert [r["seq"] for r in records[-2:]] == [301, 302]
    assert records[-2]["kind"] == "recovery"
    assert verify(read_lines(path)).ok
