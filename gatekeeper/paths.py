"""Default locations: the socket, the audit log."""

from __future__ import annotations

import os
from pathlib import Path


def default_socket() -> Path:
    """$GATEKEEPER_SOCKET, else $XDG_RUNTIME_DIR/gatekeeper/gatekeeper.sock,
    else /tmp/gatekeeper-UID/gatekeeper.sock."""
    env = os.environ.get("GATEKEEPER_SOCKET")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "gatekeeper" / "gatekeeper.sock"
    return Path(f"/tmp/gatekeeper-{os.getuid()}") / "gatekeeper.sock"  # noqa: S108


def default_audit_log() -> Path:
    """$XDG_STATE_HOME/gatekeeper/audit.jsonl (default ~/.local/state/gatekeeper/audit.jsonl)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "gatekeeper" / "audit.jsonl"
