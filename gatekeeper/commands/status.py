"""``gatekeeper status``: is the daemon up, and what does it serve?"""

from __future__ import annotations

import json
import sys

from gatekeeper.client import Client, DaemonUnavailable


def run(*, socket_path: str | None, as_json: bool) -> int:
    try:
        with Client(socket_path, timeout=5) as client:
            status = client.status()
    except DaemonUnavailable as exc:
        sys.stderr.write(f"gatekeeper: {exc}\n")
        return 1
    status.pop("id", None)
    if as_json:
        sys.stdout.write(json.dumps(status) + "\n")
        return 0
    sys.stdout.write(
        f"gatekeeper {status['version']} up {status['uptime_s']:.0f} s\n"
        f"  agents:   {', '.join(status['agents'])} (default: {status['default_agent']})\n"
        f"  policies: {status['policy_dir']}\n"
        f"  pending:  {status['pending']}   runs: {status['runs']}   "
        f"approvers: {status['approvers']}\n"
    )
    if status.get("reload_error"):
        sys.stdout.write(f"  last reload FAILED (old policies in use): {status['reload_error']}\n")
    for sink in status.get("audit_sinks") or []:
        state = "ok" if sink.get("ok") else f"FAILING ({sink.get('last_error')})"
        sys.stdout.write(
            f"  audit sink {sink.get('sink')}: {state}; sent {sink.get('sent')}, "
            f"dropped {sink.get('dropped')}, queued {sink.get('queued')}\n"
        )
    return 0
