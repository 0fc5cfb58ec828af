"""A minimal agent harness that runs every command through gatekeeper.

Usage: python examples/harness.py [COMMAND ...]

It asks the daemon about each command first (check), skips what is denied, and runs the rest
through the daemon (run): allowed commands run at once, commands the policy asks about wait for
a human in `gatekeeper approve`. The daemon is found at $GATEKEEPER_SOCKET or the default path.
"""

from __future__ import annotations

import sys

from gatekeeper.client import Client, ClientError, DaemonUnavailable

DEFAULT_COMMANDS = ["echo hello from a harness && pwd", "sudo rm -rf /"]


def main(commands: list[str]) -> int:
    worst = 0
    try:
        with Client() as gk:
            for command in commands:
                verdict = gk.check(command)
                print(f"[{verdict['decision']}] {command}")
                print(f"    {verdict['reason']}")
                if verdict["decision"] == "deny":
                    worst = max(worst, 126)
                    continue
                for event in gk.run(command, timeout=300):
                    if event["event"] == "waiting":
                        print(f"    waiting for a human: gatekeeper approve ({event['request']})")
                    elif event["event"] == "output":
                        stream = sys.stdout if event["stream"] == "stdout" else sys.stderr
                        stream.write("    | " + event["raw"].decode(errors="replace"))
                    elif event["event"] == "blocked":
                        print(f"    blocked: {event['reason']}")
                        worst = max(worst, 126)
                    elif event["event"] == "exit":
                        print(f"    exit status {event['code']}")
                        worst = max(worst, 1 if event["code"] else 0)
    except DaemonUnavailable as exc:
        print(f"gatekeeper is not running: {exc}", file=sys.stderr)
        return 125
    except ClientError as exc:
        print(f"gatekeeper refused: {exc.message}", file=sys.stderr)
        return 125
    return worst


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or DEFAULT_COMMANDS))
