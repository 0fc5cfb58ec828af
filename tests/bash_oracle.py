"""Bash as the oracle: run a line under real bash and see what it really executed and wrote.

A :class:`Sandbox` is a scratch directory with a project in it and a ``bin/`` of stand-in
programs. Each stand-in records its argv in a log, then (for echo, printf, cat) imitates the
real program's output, or (for wrappers and shells) records and ``exec``s the real program, so
that what *those* run is recorded too. Lines run with ``PATH`` = only ``bin/``, builtins that
would hide a stand-in disabled (``enable -n`` through ``BASH_ENV``), in a network namespace
(``unshare -n``), one at a time, and every file created or changed anywhere in the sandbox is
reported. Nothing here is mocked: bash parses and runs the line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

STAND_IN_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *base(const char *p) { const char *s = strrchr(p, '/'); return s ? s + 1 : p; }

static void record(int argc, char **argv) {
    const char *log = getenv("GK_ORACLE_LOG");
    if (!log) return;
    size_t n = 32;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 1;
    char *buf = malloc(n), *p = buf;
    p += sprintf(p, "%d", argc) + 1;
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]) + 1;
        memcpy(p, argv[i], l);
        p += l;
    }
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) { if (write(fd, buf, p - buf) < 0) {} close(fd); }
    free(buf);
}

static void copy(int from) {
    char b[8192]; ssize_t r;
    while ((r = read(from, b, sizeof b)) > 0) if (write(1, b, r) < 0) return;
}

int main(int argc, char **argv) {
    record(argc, argv);
    const char *name = base(argv[0]);
    /* GK_ORACLE_PASS="env=/usr/bin/env:bash=/usr/bin/bash": record, then run the real one */
    const char *pass = getenv("GK_ORACLE_PASS");
    size_t nl = strlen(name);
    while (pass && *pass) {
        const char *end = strchr(pass, ':');
        size_t len = end ? (size_t)(end - pass) : strlen(pass);
        if (len > nl + 1 && strncmp(pass, name, nl) == 0 && pass[nl] == '=') {
            char real[4096];
            size_t rl = len - nl - 1;
            if (rl >= sizeof real) return 126;
            memcpy(real, pass + nl + 1, rl); real[rl] = 0;
            execv(real, argv);
            return 126;
        }
        pass = end ? end + 1 : NULL;
    }
    if (strcmp(name, "echo") == 0) {
        for (int i = 1; i < argc; i++) { if (i > 1) putchar(' '); fputs(argv[i], stdout); }
        putchar('\n');
    } else if (strcmp(name, "printf") == 0 && argc > 1) {
        fputs(argv[1], stdout);
    } else if (strcmp(name, "cat") == 0) {
        fflush(stdout);
        if (argc == 1) copy(0);
        for (int i = 1; i < argc; i++) {
            int fd = open(argv[i], O_RDONLY);
            if (fd >= 0) { copy(fd); close(fd); }
        }
    }
    return 0;
}
"""

# Programs that only record (and maybe print): the commands lines are made of.
STAND_INS = [
    "echo",
    "printf",
    "cat",
    "ls",
    "git",
    "npm",
    "grep",
    "wc",
    "head",
    "tail",
    "rm",
    "curl",
    "wget",
    "evil",
    "cp",
    "mv",
    "chmod",
    "mkdir",
    "touch",
    "node",
    "python3",
    "make",
    "ssh",
    "scp",
    "nc",
    "sudo",
    "id",
    "whoami",
    "date",
    "true",
    "false",
    "test",
    "[",
    "kill",
    "pwd",
    "shopt",
    "gcc",
    "go",
    "cargo",
    "docker",
    "kubectl",
    "terraform",
    "psql",
    "mysql",
]
# Programs that record, then run the real one (which finds the stand-ins on PATH).
PASS_THROUGH = [
    "sed",
    "env",
    "timeout",
    "nice",
    "nohup",
    "xargs",
    "find",
    "bash",
    "sh",
    "sort",
    "tee",
    "dd",
    "stdbuf",
    "setsid",
]
# Builtins that would run instead of a stand-in of the same name.
HIDDEN_BUILTINS = ["echo", "printf", "test", "[", "true", "false", "kill", "pwd", "shopt"]

RUNNER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys
    for line in sys.stdin:
        job = json.loads(line)
        proc = subprocess.Popen(
            [job["bash"], "-c", job["line"]], cwd=job["cwd"], env=job["env"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        timed_out = False
        try:
            code = proc.wait(job["timeout"])
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers in the background
        except OSError:
            pass
        sys.stdout.write(json.dumps({"code": code, "timed_out": timed_out}) + "\\n")
        sys.stdout.flush()
    """
)


@dataclass
class Observed:
    """What one line did under bash."""

    executed: list[list[str]] = field(default_factory=list)  # argv of every program run
    written: list[str] = field(default_factory=list)  # absolute paths created or changed
    code: int = 0
    timed_out: bool = False


def build_stand_in(where: Path) -> Path:
    """Compile the stand-in program (gcc or cc); its path."""
    src = where / "stand_in.c"
    src.write_text(STAND_IN_C)
    exe = where / "stand_in"
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("a C compiler (gcc) is needed to build the stand-in programs")
    subprocess.run([compiler, "-O1", "-o", str(exe), str(src)], check=True)
    return exe


class Sandbox:
    """A scratch tree: ``proj/`` (the project and cwd), ``outside/``, ``home/``, ``bin/``."""

    def __init__(self, *, network_namespace: bool = True, timeout: float = 5.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gk-oracle-"))
        self.proj = self.root / "proj"
        self.home = self.root / "home"
        self.outside = self.root / "outside"
        self.bin = self.root / "bin"
        self.log = self.root / "argv.log"
        self.timeout = timeout
        for d in (self.proj, self.home, self.outside, self.bin):
            d.mkdir()
        exe = build_stand_in(self.root)
        real: dict[str, str] = {}
        for name in PASS_THROUGH:
            found = shutil.which(name)
            if found:
                real[name] = found if name in ("bash", "sh") else os.path.realpath(found)
        for name in (*STAND_INS, *real):
            (self.bin / name).symlink_to(exe)
        self.init = self.root / "init.bash"
        self.init.write_text("enable -n " + " ".join(HIDDEN_BUILTINS) + " 2>/dev/null\n")
        self.pass_through = ":".join(f"{k}={v}" for k, v in real.items())
        self.bash = real.get("bash") or "/bin/bash"
        self._populate()
        argv = [sys.executable, "-c", RUNNER]
        if network_namespace:
            argv = ["unshare", "-n", *argv]
        self.runner = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def _populate(self) -> None:
        for rel in ("src/app.py", "README.md", "notes.txt", "out/.keep", "npm/.keep", "sub/x"):
            p = self.proj / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("data\n")
        (self.outside / "secret").write_text("outside\n")

    def env(self) -> dict[str, str]:
        return {
            "PATH": str(self.bin),
            "HOME": str(self.home),
            "BASH_ENV": str(self.init),
            "GK_ORACLE_LOG": str(self.log),
            "GK_ORACLE_PASS": self.pass_through,
            "LC_ALL": "C.UTF-8",
        }

    def _snapshot(self) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        skip = {str(self.log), str(self.bin), str(self.init)}
        for dirpath, dirnames, filenames in os.walk(self.root):
            if dirpath in skip:
                dirnames[:] = []
                continue
            for name in filenames + dirnames:
                p = os.path.join(dirpath, name)
                if p in skip or p.endswith(("stand_in", "stand_in.c")):
                    continue
                with contextlib.suppress(OSError):
                    st = os.lstat(p)
                    out[p] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    def run(self, line: str) -> Observed:
        """Run ``line`` with ``bash -c`` in the project; what it executed and wrote."""
        self.log.unlink(missing_ok=True)
        before = self._snapshot()
        assert self.runner.stdin is not None
        assert self.runner.stdout is not None
        job = {
            "bash": self.bash,
            "line": line,
            "cwd": str(self.proj),
            "env": self.env(),
            "timeout": self.timeout,
        }
        self.runner.stdin.write(json.dumps(job) + "\n")
        self.runner.stdin.flush()
        result = json.loads(self.runner.stdout.readline())
        after = self._snapshot()
        # A file created or changed, or a directory created (a directory's own mtime moves
        # whenever a file in it is created: that is not a write of its own).
        written = sorted(
            p
            for p, meta in after.items()
            if p not in before or (before[p] != meta and not os.path.isdir(p))
        )
        self._undo(before, after)
        return Observed(self._executed(), written, result["code"], result["timed_out"])

    def _executed(self) -> list[list[str]]:
        try:
            data = self.log.read_bytes()
        except FileNotFoundError:
            return []
        fields = data.split(b"\0")
        out: list[list[str]] = []
        i = 0
        while i < len(fields) - 1:
            count = int(fields[i])
            argv = [f.decode("utf-8", "surrogateescape") for f in fields[i + 1 : i + 1 + count]]
            out.append(argv)
            i += 1 + count
        return out

    def _undo(
        self, before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
    ) -> None:
        """Put the tree back: remove what the line created (files it changed stay changed)."""
        for p in sorted((p for p in after if p not in before), key=len, reverse=True):
            with contextlib.suppress(OSError):
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.runner.stdin is not None:
                self.runner.stdin.close()
        try:
            self.runner.wait(10)
        except subprocess.TimeoutExpired:
            self.runner.send_signal(signal.SIGKILL)
            self.runner.wait()
        if self.runner.stdout is not None:
            self.runner.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)


def can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0
    except OSError:
        return False
