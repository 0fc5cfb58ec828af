"""systemd integration without libsystemd: socket activation and sd_notify.

* :func:`inherited_socket` takes the listening socket systemd handed over (``LISTEN_FDS``,
  ``LISTEN_PID``; sd_listen_fds(3)) and clears those variables so that nothing the daemon
  starts inherits them.
* :class:`Notifier` sends ``READY=1``, ``RELOADING=1``, ``STOPPING=1`` and ``STATUS=…`` to
  ``NOTIFY_SOCKET`` (sd_notify(3)); without ``NOTIFY_SOCKET`` it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time

from gatekeeper.errors import GatekeeperError

SD_LISTEN_FDS_START = 3


def inherited_socket() -> socket.socket | None:
    """The Unix stream socket systemd passed to this process, or None if there is none."""
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if pid is None or count is None:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    if not pid.isdigit() or int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    if count != "1":
        raise GatekeeperError(
            f"systemd passed {count} sockets; gatekeeper.socket must have exactly one ListenStream="
        )
    fd = SD_LISTEN_FDS_START
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise GatekeeperError(f"the socket systemd passed (fd {fd}) is not open: {exc}") from None
    if not stat.S_ISSOCK(mode):
        raise GatekeeperError(f"fd {fd} from systemd is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise GatekeeperError("gatekeeper.socket must be a Unix stream socket (ListenStream=)")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock


class Notifier:
    """sd_notify over a datagram socket; silent when not started by systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.pop("NOTIFY_SOCKET", None)
        self.address: str | None = None
        if address and address.startswith(("/", "@")):
            # '@' is the abstract namespace: a leading NUL byte on the wire.
            self.address = "\0" + address[1:] if address.startswith("@") else address

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        message = "\n".join(fields).encode()
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(self.address)
            s.sendall(message)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 match the reload to its Type=notify-reload logic.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading policies")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: letting runs finish")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")
