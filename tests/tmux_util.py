"""Drive a real terminal program in tmux: send keys, read the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest


def require_tmux() -> str:
    """The tmux binary; a missing tmux skips locally but fails in CI (which installs it)."""
    path = shutil.which("tmux")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing in CI: .ci/run should have installed it")
        pytest.skip("tmux is not installed")
    return path


class Tmux:
    """One detached tmux session on a private server, 80x24 unless told otherwise."""

    def __init__(self, command: str, width: int = 80, height: int = 24) -> None:
        self.tmux = require_tmux()
        self.server = f"gk-{uuid.uuid4().hex[:8]}"
        self.session = "app"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        env["TERM"] = "xterm"
        subprocess.run(
            [
                self.tmux,
                "-L",
                self.server,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                self.session,
                "-x",
                str(width),
                "-y",
                str(height),
                command,
            ],
            check=True,
            env=env,
        )

    def screen(self) -> str:
        out = subprocess.run(
            [self.tmux, "-L", self.server, "capture-pane", "-p", "-t", self.session],
            capture_output=True,
            check=False,
        )
        return out.stdout.decode(errors="replace")

    def send(self, *keys: str) -> None:
        subprocess.run(
            [self.tmux, "-L", self.server, "send-keys", "-t", self.session, *keys], check=True
        )

    def type(self, text: str) -> None:
        """Type literal text (no key names)."""
        subprocess.run(
            [self.tmux, "-L", self.server, "send-keys", "-l", "-t", self.session, text],
            check=True,
        )

    def wait_for(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared on screen:\n{screen}")

    def wait_gone(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never left the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.server, "kill-server"], check=False, capture_output=True
        )
