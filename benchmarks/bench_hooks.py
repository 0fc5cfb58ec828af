"""What a hook costs a harness: the whole hook process, stdin JSON to answer, per tool call.

Run: ``python benchmarks/bench_hooks.py [--runs N] [--json]``

Claude Code and Codex start the hook command once per tool call, so its cost is a process's
start-up plus one check. Measured in one run, interleaved (one of each per round, so that a
slow moment of the machine hits them alike), each a fresh process fed the same PreToolUse
payload (a Bash call the policy allows, already decided once so the daemon answers from its
cache):

* **bare**: ``python -c pass`` with the same interpreter — the floor any Python hook pays;
* **hook**: ``python -P -E -s -m gatekeeper.hooks claude-code`` against a running daemon
  (what ``gatekeeper hook install`` writes);
* **hook via the CLI**: ``python -m gatekeeper hook claude-code`` (argparse and the CLI's
  imports on top);
* **cc-safety-net**: ``cc-safety-net hook --claude-code``, a Node hook from npm (the pinned
  copy in tests/e2e/clis), as a peer.

Reported: median and p90 per variant in ms, and the ratio of medians hook / bare (the
design's target: ≤ 1.5). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatekeeper.commands.hook import hook_argv  # noqa: E402
from tests.daemon_util import make_policy_dir, subprocess_daemon  # noqa: E402

SAFETY_NET = REPO / "tests" / "e2e" / "clis" / "node_modules" / ".bin" / "cc-safety-net"
TARGET = 1.5


def payload(cwd: str) -> bytes:
    return json.dumps(
        {
            "session_id": "bench",
            "transcript_path": "/dev/null",
            "cwd": cwd,
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "echo hello && pwd"},
            "tool_use_id": "toolu_bench",
        }
    ).encode()


def timed(argv: list[str], data: bytes, env: dict[str, str]) -> tuple[float, bytes]:
    began = time.perf_counter()
    done = subprocess.run(argv, input=data, capture_output=True, env=env, check=False)
    elapsed = (time.perf_counter() - began) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="rounds (default 60)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gkh", dir="/tmp"))
    sock = tmp / "s.sock"
    env = {**os.environ, "HOME": str(tmp)}
    env.pop("CLAUDE_PROJECT_DIR", None)
    data = payload(str(tmp))
    variants: dict[str, list[str]] = {
        "bare": [sys.executable, "-c", "pass"],
        # exactly what `gatekeeper hook install claude-code` writes (without its fallback)
        "hook": hook_argv(
            "claude-code", agent=None, socket_path=str(sock), wait=False, deadline=20
        ),
        "hook via the CLI": [
            sys.executable,
            "-m",
            "gatekeeper",
            "hook",
            "claude-code",
            "--socket",
            str(sock),
        ],
    }
    if SAFETY_NET.exists():
        variants["cc-safety-net"] = [str(SAFETY_NET), "hook", "--claude-code"]
    times: dict[str, list[float]] = {name: [] for name in variants}
    with subprocess_daemon(sock, make_policy_dir(tmp)):
        for name, cmd in variants.items():  # warm up: caches, the daemon's first decision
            _, out = timed(cmd, data, env)
            if name.startswith("hook"):
                assert b'"allow"' in out, out
        for _ in range(args.runs):
            for name, cmd in variants.items():
                times[name].append(timed(cmd, data, env)[0])
    result: dict[str, Any] = {"runs": args.runs, "variants": {}}
    for name, samples in times.items():
        ordered = sorted(samples)
        result["variants"][name] = {
            "median_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 2),
        }
    bare = result["variants"]["bare"]["median_ms"]
    hook = result["variants"]["hook"]["median_ms"]
    result["hook_over_bare"] = round(hook / bare, 2)
    result["target"] = TARGET
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'variant':<20} {'median ms':>10} {'p90 ms':>8} {'/ bare':>7}")
    for name, v in result["variants"].items():
        ratio = v["median_ms"] / bare
        print(f"{name:<20} {v['median_ms']:>10.1f} {v['p90_ms']:>8.1f} {ratio:>7.2f}")
    verdict = "PASS" if result["hook_over_bare"] <= TARGET else "OVER"
    print(f"\nhook / bare (medians): {result['hook_over_bare']:.2f}  (≤ {TARGET})  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
