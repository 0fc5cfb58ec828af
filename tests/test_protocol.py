from __future__ import annotations

import json

import pytest

from gatekeeper.protocol import (
    MAX_LINE,
    Answer,
    Cancel,
    Check,
    LineDecoder,
    ProtocolError,
    Run,
    encode,
    parse_request,
)


def req(**fields: object) -> bytes:
    return json.dumps({"v": 1, "id": 1, **fields}).encode()


def error_of(line: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as exc:
        parse_request(line)
    return exc.value


def test_decoder_splits_lines_across_chunks() -> None:
    d = LineDecoder()
    assert list(d.feed(b'{"a":1}\n{"b"')) == [b'{"a":1}']
    assert list(d.feed(b":2}\n\n")) == [b'{"b":2}', b""]
    assert d.pending == 0


def test_decoder_refuses_a_line_over_the_limit() -> None:
    d = LineDecoder(limit=10)
    assert list(d.feed(b"0123456789")) == []
    with pytest.raises(ProtocolError) as exc:
        list(d.feed(b"x"))
    assert exc.value.code == "too_large"


def test_decoder_limit_is_exact_at_one_mebibyte() -> None:
    d = LineDecoder()
    assert list(d.feed(b"x" * MAX_LINE + b"\n")) == [b"x" * MAX_LINE]
    with pytest.raises(ProtocolError):
        list(LineDecoder().feed(b"x" * (MAX_LINE + 1) + b"\n"))


def test_check_command_and_path() -> None:
    c = parse_request(req(op="check", command="ls", cwd="/p", agent="a"))
    assert c == Check(1, "check", "a", "ls", None, None, "/p")
    p = parse_request(req(op="check", path="x.py", permission="write"))
    assert isinstance(p, Check) and p.path == "x.py" and p.permission == "write"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{not json", "bad_request"),
        (b"[1, 2]", "bad_request"),
        (b'"just a string"', "bad_request"),
        (b'{"v": 1, "op": "status"}', "bad_request"),
        (b'{"v": 1, "id": true, "op": "status"}', "bad_request"),
        (b'{"v": 1, "id": [1], "op": "status"}', "bad_request"),
        (b'{"v": 2, "id": 1, "op": "status"}', "unsupported_version"),
        (b'{"id": 1, "op": "status"}', "unsupported_version"),
        (b'{"v": 1, "id": 1, "op": "explode"}', "unknown_op"),
        (b'{"v": 1, "id": 1}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check", "command": 5}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check", "command": "ls", "path": "x"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check", "path": "x", "permission": "bash"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check", "command": "ls\\u0000rm"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check", "command": "\\ud800"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "check", "command": "ls \xff"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "run", "command": "ls"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "run", "command": "ls", "cwd": "rel"}', "bad_request"),
        (
            b'{"v": 1, "id": 1, "op": "run", "command": "ls", "cwd": "/", "timeout": -1}',
            "bad_request",
        ),
        (
            b'{"v": 1, "id": 1, "op": "run", "command": "ls", "cwd": "/", "env": {"A": 1}}',
            "bad_request",
        ),
        (
            b'{"v": 1, "id": 1, "op": "run", "command": "ls", "cwd": "/", "env": {"A=B": "x"}}',
            "bad_request",
        ),
        (b'{"v": 1, "id": 1, "op": "cancel"}', "bad_request"),
        (b'{"v": 1, "id": 1, "op": "answer", "request": "p1", "answer": "yes"}', "bad_request"),
    ],
)
def test_bad_requests(line: bytes, code: str) -> None:
    assert error_of(line).code == code


def test_error_keeps_the_id_when_it_was_readable() -> None:
    err = error_of(b'{"v": 1, "id": "abc", "op": "nope"}')
    assert err.reply() == {"id": "abc", "error": {"code": "unknown_op", "message": err.message}}
    assert error_of(b"{oops").reply()["id"] is None


def test_deeply_nested_json_is_a_clean_error() -> None:
    assert error_of(b"[" * 100_000 + b"]" * 100_000).code == "bad_request"


def test_run_cancel_answer() -> None:
    r = parse_request(req(op="run", command="ls", cwd="/", env={"A": "b"}, timeout=2, stdin="x"))
    assert r == Run(1, "run", None, "ls", "/", {"A": "b"}, 2.0, b"x")
    b = parse_request(req(op="run", command="cat", cwd="/", stdin_base64="//4="))
    assert isinstance(b, Run)
    assert b.stdin == b"\xff\xfe"
    assert error_of(req(op="run", command="cat", cwd="/", stdin_base64="!!")).code == "bad_request"
    bad_env = req(op="run", command="ls", cwd="/", env={"A": "\ud800"})
    assert error_of(bad_env).code == "bad_request"
    assert parse_request(req(op="cancel", target="r1")) == Cancel(1, "cancel", "r1")
    a = parse_request(req(op="answer", request="p1", answer="always", pattern="git *"))
    assert isinstance(a, Answer) and a.pattern == "git *"


def test_unknown_fields_are_ignored() -> None:
    assert isinstance(parse_request(req(op="check", command="ls", future_field=1)), Check)


def test_encode_is_one_line() -> None:
    line = encode({"id": 1, "data": "a\nb"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"id": 1, "data": "a\nb"}
