"""The approval app: its queue logic, and the real app driven in tmux as a person would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.approve_app import ARM_DELAY, Queue, request_lines
from tests.daemon_util import make_policy_dir, short_dir, subprocess_daemon
from tests.tmux_util import Tmux

# -- the queue, pure ---------------------------------------------------------------------------


def item(key: str, command: str = "ls") -> dict[str, object]:
    return {
        "request": key,
        "agent": "a",
        "command": command,
        "cwd": "/p",
        "created": 0.0,
        "expires_at": 100.0,
        "decision": {"parts": []},
    }


def test_new_requests_never_move_the_selection() -> None:
    q = Queue()
    q.add(item("p1"), now=10.0)
    assert (q.selected, q.shown_since) == ("p1", 10.0)
    q.add(item("p2"), now=11.0)
    assert (q.selected, q.shown_since) == ("p1", 10.0)


def test_a_request_that_slides_into_place_must_be_seen_first() -> None:
    q = Queue()
    q.add(item("p1"), now=0.0)
    q.add(item("p2"), now=0.0)
    assert q.armed(now=5.0)
    q.remove("p1", now=5.0)  # answered elsewhere or timed out, just as a key is pressed
    assert q.selected == "p2"
    assert not q.armed(now=5.0)
    assert not q.armed(now=5.0 + ARM_DELAY / 2)
    assert q.armed(now=5.0 + ARM_DELAY)


def test_moving_arms_after_the_delay_and_clamps() -> None:
    q = Queue()
    for k in ("p1", "p2", "p3"):
        q.add(item(k), now=0.0)
    q.move(5, now=1.0)
    assert q.selected == "p3"
    assert not q.armed(now=1.0)
    q.move(-1, now=2.0)
    assert q.selected == "p2"
    q.remove("p3", now=3.0)
    assert q.selected == "p2"  # removing another request keeps the selection and its clock
    assert q.shown_since == 2.0
    q.clear(now=4.0)
    assert q.selected is None
    assert not q.armed(now=10.0)


def test_removing_the_last_selects_the_one_before() -> None:
    q = Queue()
    q.add(item("p1"), now=0.0)
    q.add(item("p2"), now=0.0)
    q.move(1, now=0.0)
    q.remove("p2", now=1.0)
    assert q.selected == "p1"


def test_details_make_invisible_characters_visible() -> None:
    text = "\n".join(request_lines(item("p1", "echo \u202eevil\u200b; ls\x1b[2J"), now=50.0))
    assert "\\u202e" in text
    assert "\\u200b" in text
    assert "\\e[2J" in text
    assert "\u202e" not in text
    assert "\x1b" not in text
    assert "50s left" in text


# -- the real app in tmux ----------------------------------------------------------------------


@pytest.fixture
def where() -> Iterator[Path]:
    d = short_dir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def approve_app(sock: Path) -> Tmux:
    return Tmux(f"{sys.executable} -m gatekeeper approve --socket {sock}")


def request(sock: Path, command: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "run", "--socket", str(sock), "--", command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out.decode(), err.decode()


def settle() -> None:
    time.sleep(ARM_DELAY + 0.2)


@pytest.fixture
def daemon(where: Path) -> Iterator[Path]:
    sock = where / "s.sock"
    with subprocess_daemon(sock, make_policy_dir(where), "--approval-timeout", "60"):
        yield sock


@pytest.fixture
def app(daemon: Path) -> Iterator[Tmux]:
    t = approve_app(daemon)
    try:
        t.wait_for("connected")
        yield t
    finally:
        t.close()


def test_once(app: Tmux, daemon: Path, where: Path) -> None:
    proc = request(daemon, "touch made && echo done", where)
    screen = app.wait_for("touch made && echo done")
    assert "why it asks:" in screen
    assert 'rule "*" → ask (tester.md:4)' in screen
    settle()
    app.send("y")
    code, out, err = finish(proc)
    assert (code, out) == (0, "done\n")
    assert "waiting for a human" in err
    assert (where / "made").exists()
    app.wait_for("p1: once")
    app.wait_for("nothing is waiting for you")


def test_always_with_an_edited_pattern(app: Tmux, daemon: Path, where: Path) -> None:
    proc = request(daemon, "touch one", where)
    app.wait_for("touch one")
    settle()
    app.send("a")
    screen = app.wait_for("always allow — edit the pattern below")
    assert "touch *" in screen  # the suggested pattern, editable
    app.send("C-u")
    app.type("touch o*")
    app.send("Enter")
    assert finish(proc)[0] == 0
    app.wait_for('always "touch o*"')
    second = request(daemon, "touch other", where)
    code, _, err = finish(second)
    assert code == 0
    assert "waiting" not in err  # allowed by the remembered rule, nobody asked
    third = request(daemon, "touch zzz", where)  # not covered by the edited pattern
    app.wait_for("touch zzz")
    settle()
    app.send("n")
    app.wait_for("reject — a message for the agent")
    app.send("Enter")
    assert finish(third)[0] == 126


def test_escape_backs_out_and_enter_alone_never_approves(
    app: Tmux, daemon: Path, where: Path
) -> None:
    proc = request(daemon, "touch nope", where)
    app.wait_for("touch nope")
    settle()
    app.send("Enter")
    app.wait_for("Enter alone does nothing")
    app.send("?")
    app.wait_for("Enter alone never approves anything")
    app.send("x")
    app.wait_for("why it asks:")
    app.send("a")
    app.wait_for("always allow")
    app.send("Escape")
    app.wait_for("backed out: nothing sent")
    time.sleep(0.3)
    assert proc.poll() is None  # still waiting
    assert "touch nope" in app.screen()
    settle()
    app.send("n")
    app.wait_for("reject —")
    app.send("Enter")
    assert finish(proc)[0] == 126


def test_reject_with_a_message(app: Tmux, daemon: Path, where: Path) -> None:
    proc = request(daemon, "touch bad", where)
    app.wait_for("touch bad")
    settle()
    app.send("n")
    app.wait_for("reject — a message for the agent below")
    app.type("use the build dir, not the repo root")
    app.send("Enter")
    code, _, err = finish(proc)
    assert code == 126
    assert "rejected by a human — use the build dir, not the repo root" in err
    assert not (where / "bad").exists()


def test_two_queued_requests(app: Tmux, daemon: Path, where: Path) -> None:
    first = request(daemon, "touch first", where)
    app.wait_for("touch first")
    second = request(daemon, "touch second", where)
    screen = app.wait_for("2 pending")
    assert screen.index("touch first") < screen.index("touch second")
    assert "> p1" in screen  # the selection stayed on the first
    settle()
    app.send("j")  # look at the second, answer it first
    app.wait_for("> p2")
    settle()
    app.send("n")
    app.wait_for("reject —")
    app.type("not that one")
    app.send("Enter")
    code2, _, err2 = finish(second)
    assert (code2, "not that one" in err2) == (126, True)
    app.wait_for("1 pending")
    settle()
    app.send("y")
    assert finish(first)[0] == 0
    assert (where / "first").exists()
    assert not (where / "second").exists()


def test_a_key_pressed_as_a_request_arrives_does_not_answer_it(
    app: Tmux, daemon: Path, where: Path
) -> None:
    proc = request(daemon, "touch surprise", where)
    app.wait_for("touch surprise")
    app.send("y")  # at once: the person has not seen it yet
    app.wait_for("just appeared: look at it first")
    time.sleep(0.3)
    assert proc.poll() is None
    settle()
    app.send("y")
    assert finish(proc)[0] == 0


def test_reconnects_after_a_daemon_restart(where: Path) -> None:
    sock = where / "s.sock"
    policies = make_policy_dir(where)
    with subprocess_daemon(sock, policies, "--approval-timeout", "60") as proc:
        t = approve_app(sock)
        try:
            t.wait_for("connected")
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            t.wait_for("DAEMON NOT REACHABLE")
            with subprocess_daemon(sock, policies, "--approval-timeout", "60"):
                t.wait_for("— connected")
                req = request(sock, "touch again", where)
                t.wait_for("touch again")
                settle()
                t.send("y")
                assert finish(req)[0] == 0
        finally:
            t.close()


def test_always_saved_into_the_agent_file(where: Path) -> None:
    sock = where / "s.sock"
    policies = make_policy_dir(where)
    agent_file = policies / "tester.md"
    agent_file.write_text(
        agent_file.read_text().replace('    "*": ask\n', '    "*": ask  # ask by default\n')
    )
    before = agent_file.read_text().splitlines()
    with subprocess_daemon(sock, policies, "--approval-timeout", "60"):
        t = approve_app(sock)
        try:
            t.wait_for("connected")
            proc = request(sock, "touch saved", where)
            t.wait_for("touch saved")
            settle()
            t.send("a")
            t.wait_for("always allow")
            t.send("C-s")
            assert finish(proc)[0] == 0
            t.wait_for("saved to")
        finally:
            t.close()
        after = agent_file.read_text().splitlines()
        added = [line for line in after if line not in before]
        assert added == ['    "touch *": allow']
        assert [line for line in after if line in before] == before  # nothing else changed
        assert "# ask by default" in agent_file.read_text()
    # A new daemon reading the file allows it without asking anyone.
    with subprocess_daemon(sock, policies, "--approval-timeout", "1"):
        code, _, err = finish(request(sock, "touch again", where))
        assert code == 0
        assert "waiting" not in err


def test_the_app_needs_a_terminal(daemon: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "approve", "--socket", str(daemon)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert b"needs a terminal" in proc.stderr


def test_list_and_script_answers(daemon: Path, where: Path) -> None:
    proc = request(daemon, "touch listed", where)
    deadline = time.monotonic() + 10
    out = b""
    while b"touch listed" not in out and time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-m", "gatekeeper", "approve", "--socket", str(daemon), "--list"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        time.sleep(0.05)
    assert b"p1" in out
    assert b"touch listed" in out
    as_json = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "approve",
            "--socket",
            str(daemon),
            "--list",
            "--json",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    assert b'"request": "p1"' in as_json
    # A script without a terminal may not answer (the daemon requires one by default) …
    refused = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "approve", "--socket", str(daemon), "p1", "once"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
        start_new_session=True,
    )
    assert refused.returncode == 3
    assert b"terminal" in refused.stderr
    # … but the same command typed in a terminal may.
    t = Tmux(
        f"{sys.executable} -m gatekeeper approve --socket {daemon} p1 reject "
        f"--message scripted; sleep 30"
    )
    try:
        t.wait_for("p1: reject")
        code, _, err = finish(proc)
        assert code == 126
        assert "scripted" in err
    finally:
        t.close()


def test_a_command_run_by_the_daemon_cannot_approve(daemon: Path, where: Path) -> None:
    proc = request(daemon, "touch victim", where)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listing = subprocess.run(
            [sys.executable, "-m", "gatekeeper", "approve", "--socket", str(daemon), "--list"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        if b"p1" in listing:
            break
        time.sleep(0.05)
    # The agent tries to approve its own pending request through an allowed command.
    script = where / "self_approve.sh"
    script.write_text(
        f"{sys.executable} -m gatekeeper approve --socket {daemon} p1 once; echo status=$?\n"
    )
    agent_file = daemon.parent / "policies" / "tester.md"
    agent_file.write_text(
        agent_file.read_text().replace(
            '    "pwd": allow\n', '    "pwd": allow\n    "bash *": allow\n'
        )
    )
    from gatekeeper.client import Client

    with Client(daemon) as c:
        assert c.reload()["ok"] is True
    runner = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "run",
            "--socket",
            str(daemon),
            "--",
            f"bash {script}",
        ],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=where,
    )
    out = runner.stdout.decode() + runner.stderr.decode()
    assert "status=3" in out
    assert "cannot approve" in out
    assert proc.poll() is None  # still waiting for a human
    proc.kill()
    proc.communicate()
    assert not (where / "victim").exists()
