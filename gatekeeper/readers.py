"""The independent readers: bash's own parser, then mvdan/sh, confirming gatekeeper's reading.

An ``allow`` stands only when these agree with the tree-sitter walk on every text of the line
(docs/security.md §6):

1. ``bash --pretty-print`` parses the text with bash's own parser — the one that will run it —
   and prints bash's canonical form of it, running nothing;
2. ``shfmt --to-json`` (mvdan/sh, a parser family of its own) turns that canonical form into a
   syntax tree, which :mod:`gatekeeper.shell.mvdan` turns into a reading;
   — unless the print is plain (words and list operators only), which
   :mod:`gatekeeper.shell.canonical` reads directly: bash's reading without a second parser;
3. the reading is compared with the walk's (:func:`gatekeeper.shell.reading.difference`).

Any difference, error, timeout or missing reader is an ``ask`` part: never an allow. Both
readers are separate processes; to keep a cold allow cheap they are started ahead of need
(:class:`Prestarted`), each one reading one input. This module is I/O; the daemon calls it from
its analysis worker, off the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sysconfig
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from gatekeeper.shell import Analysis, Part
from gatekeeper.shell.canonical import simple_reading
from gatekeeper.shell.mvdan import reading_of
from gatekeeper.shell.reading import Reading, difference

log = logging.getLogger(__name__)

BASH = shutil.which("bash") or "/bin/bash"
TIMEOUT = 2.0  # seconds one reader may take for one text
MAX_CONFIRM_BYTES = 16 * 1024  # longer texts are not confirmed: they ask
_CACHE = 4096
# The readers run with nothing from the caller's environment: no BASH_ENV, no locale surprises.
_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "GOGC": "off", "GOMAXPROCS": "1"}


def find_shfmt() -> str | None:
    """The shfmt that came with gatekeeper (the ``shfmt-py`` package), else one on PATH."""
    scripts = sysconfig.get_path("scripts")
    for candidate in (os.path.join(scripts, "shfmt"), shutil.which("shfmt")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Prestarted:
    """Processes of one command started before they are needed; each reads one input.

    ``take`` hands out a process that is already waiting on its stdin (the fork and exec were
    paid earlier); ``refill`` starts replacements, and is called when nobody waits.
    """

    def __init__(self, argv: Sequence[str], size: int = 2) -> None:
        self.argv = list(argv)
        self.size = size
        self._ready: list[subprocess.Popen[bytes]] = []

    def _start(self) -> subprocess.Popen[bytes]:
        return _spawn(self.argv)

    def refill(self) -> None:
        while self.refill_one():
            pass

    def refill_one(self) -> bool:
        if len(self._ready) >= self.size:
            return False
        self._ready.append(self._start())
        return True

    def run(self, data: bytes, timeout: float) -> tuple[int, bytes, bytes] | None:
        """(exit status, stdout, stderr) of one process fed ``data``; None on timeout."""
        try:
            proc = self._ready.pop(0) if self._ready else self._start()
        except OSError:
            return None
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            # too slow, or a prestarted process that died (a broken pipe)
            _kill(proc)
            return None
        return proc.returncode, out, err

    def close(self) -> None:
        ready, self._ready = self._ready, []
        for proc in ready:
            _kill(proc)


def _spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    # A session of its own: a reader and anything it started die together (_kill).
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_ENV,
        close_fds=True,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc.communicate(timeout=1)


class StreamingPrinter:
    """One long-lived ``bash --pretty-print`` that prints text after text from its stdin.

    In pretty-print mode bash parses and prints each command and runs nothing (not even a
    substitution: checked). Each text is followed by a command that only this request can
    spell, ``: GKEND_<random>``; bash's print of the text is everything before that line. A
    text that leaves something open (a quote, a here-document) swallows the sentinel: no
    answer within ``timeout``, and the process is replaced. So is one that ends in an error
    (bash stops at a syntax error) or prints a warning.
    """

    def __init__(self, argv: Sequence[str], timeout: float = 0.5) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._retire()
            self._proc = _spawn(self.argv)

    def _retire(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill(proc)

    def run(self, data: bytes, timeout: float) -> tuple[int, bytes, bytes] | None:
        """(0, bash's print, b"") — or (status, b"", stderr) on an error, None on timeout."""
        try:
            self.start()
        except OSError:
            return None
        proc = self._proc
        assert proc is not None  # noqa: S101 - started above
        assert proc.stdin is not None  # noqa: S101 - always piped
        assert proc.stdout is not None  # noqa: S101
        assert proc.stderr is not None  # noqa: S101
        sentinel = b": GKEND_" + secrets.token_hex(12).encode() + b"\n"
        try:
            proc.stdin.write(data + b"\n" + sentinel)
            proc.stdin.flush()
        except OSError:
            self._retire()
            return None
        deadline = time.monotonic() + min(timeout, self.timeout)
        out = b""
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        while True:
            end = out.find(b"\n" + sentinel)
            if end >= 0 or out.startswith(sentinel):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self._retire()
                return None
            ready, _, _ = select.select([out_fd, err_fd], [], [], left)
            if err_fd in ready:
                # bash only writes to stderr on an error (and then stops) or a warning
                err = os.read(err_fd, 65536)
                status = 2
                self._retire()
                return status, b"", err
            if out_fd in ready:
                chunk = os.read(out_fd, 1 << 20)
                if not chunk:
                    self._retire()
                    return 2, b"", b"bash stopped"
                out += chunk
        return 0, (out[: end + 1] if end >= 0 else b""), b""

    def close(self) -> None:
        self._retire()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the readers said about one text: agreement, or why not."""

    agrees: bool
    why: str = ""


class Readers:
    """bash's reading of shell text through ``bash --pretty-print`` and mvdan/sh.

    ``prestart`` processes of each reader wait ahead of need (0: start one per text, which is
    what a one-shot ``gatekeeper check`` wants). Verdicts are cached per text.
    """

    def __init__(
        self,
        *,
        bash: str = BASH,
        shfmt: str | None = None,
        timeout: float = TIMEOUT,
        prestart: int = 0,
    ) -> None:
        self.bash = bash
        self.shfmt = shfmt if shfmt is not None else find_shfmt()
        self.timeout = timeout
        self._bash = StreamingPrinter([bash, "--noprofile", "--norc", "--pretty-print"])
        self._shfmt = Prestarted([self.shfmt or "shfmt", "--to-json", "-ln", "bash"], prestart)
        self._cache: OrderedDict[tuple[str, Reading], Verdict] = OrderedDict()
        self.missing = self._check()
        if self.missing:
            log.warning("bash's reading cannot be confirmed: %s; allows become asks", self.missing)
        self.no_mvdan = (
            None
            if self.shfmt is not None and os.access(self.shfmt, os.X_OK)
            else "shfmt (the shfmt-py package) is not installed"
        )
        if self.no_mvdan and not self.missing:
            log.warning("%s: only plain lines can be confirmed, other allows ask", self.no_mvdan)

    def _check(self) -> str | None:
        try:
            probe = subprocess.run(
                [self.bash, "--noprofile", "--norc", "--pretty-print"],
                input=b"true\n",
                capture_output=True,
                env=_ENV,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{self.bash} --pretty-print failed: {exc}"
        if probe.returncode != 0 or probe.stdout.strip() != b"true":
            return f"{self.bash} has no --pretty-print (bash 5.2 or newer is needed)"
        return None

    def refill(self) -> None:
        """Start the readers' next processes (call when idle)."""
        while self.refill_one():
            pass

    def refill_one(self) -> bool:
        """Start at most one reader process that is missing; whether one was started."""
        if self.missing:
            return False
        with contextlib.suppress(OSError):
            self._bash.start()
            return False if self.no_mvdan else self._shfmt.refill_one()
        return False

    def close(self) -> None:
        self._bash.close()
        self._shfmt.close()

    def reading(self, text: str) -> Reading | str:
        """bash's reading of ``text``, or why there is none."""
        if self.missing:
            return self.missing
        data = text.encode("utf-8", "surrogateescape")
        if len(data) > MAX_CONFIRM_BYTES:
            return f"longer than {MAX_CONFIRM_BYTES} bytes: bash's reading is not checked"
        printed = self._bash.run(data, self.timeout)
        if printed is None:
            return "bash --pretty-print did not answer in time"
        status, canonical, err = printed
        if status != 0:
            first = err.decode("utf-8", "replace").strip().splitlines()[:1]
            return "bash cannot parse it: " + (first[0] if first else f"status {status}")
        plain = simple_reading(canonical.decode("utf-8", "surrogateescape"))
        if plain is not None:
            return plain  # bash's print of a plain line reads without a parser
        if self.no_mvdan:
            return self.no_mvdan
        tree = self._shfmt.run(canonical, self.timeout)
        if tree is None:
            return "shfmt did not answer in time"
        status, out, err = tree
        if status != 0:
            first = err.decode("utf-8", "replace").strip().splitlines()[:1]
            return "mvdan/sh cannot parse bash's print of it: " + (first[0] if first else "")
        try:
            return reading_of(json.loads(out), canonical)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"mvdan/sh's tree could not be read ({type(exc).__name__})"

    def verdict(self, text: str, ours: Reading) -> Verdict:
        """Whether bash reads ``text`` as ``ours`` says (remembered per text and reading)."""
        key = (text, ours)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        theirs = self.reading(text)
        if isinstance(theirs, str):
            verdict = Verdict(False, theirs)
        else:
            diff = difference(ours, theirs)
            verdict = Verdict(diff is None, diff or "")
        if not self.missing:
            self._cache[key] = verdict
            if len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return verdict

    def confirm(self, analysis: Analysis) -> tuple[Part, ...]:
        """Parts to add to ``analysis``: none when bash reads every text as gatekeeper did."""
        started = time.monotonic()
        for source in dict.fromkeys(analysis.sources):
            verdict = self.verdict(source.text, source.reading)
            if not verdict.agrees:
                log.debug("readings differ on %r: %s", source.text[:200], verdict.why)
                return (
                    Part(
                        "bash",
                        source.text[:200],
                        "ask",
                        f"bash may read this differently from gatekeeper: {verdict.why}",
                    ),
                )
            if time.monotonic() - started > 4 * self.timeout:
                return (Part("bash", source.text[:200], "ask", "confirming took too long"),)
        return ()


_shared: Readers | None = None


def shared() -> Readers:
    """One :class:`Readers` for in-process callers (``gatekeeper check``, ``policy lint``)."""
    global _shared  # noqa: PLW0603 - one lazily built reader set per process
    if _shared is None:
        _shared = Readers()
    return _shared


def confirm(analysis: Analysis) -> tuple[Part, ...]:
    """:meth:`Readers.confirm` with the shared readers: an ``engine.Confirmer``."""
    return shared().confirm(analysis)
