"""Inside a fresh network namespace: bring up loopback, start the fake model server, run the CLI.

Run as ``unshare -n -- python -m tests.e2e.netns_main SPEC.json`` (see :func:`tests.e2e.harness
.run_isolated`). SPEC holds ``server`` (argv of the fake model server, which must write its port
to the file named by ``$GK_PORT_FILE``), ``client`` (argv of the agent CLI; ``{port}`` in any
argument or environment value is replaced by the server's port), ``env``, ``cwd``, ``timeout``
and ``out`` (a directory for the client's stdout/stderr and the server's log).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out = Path(spec["out"])
    port_file = out / "port"
    server_env = {**os.environ, **spec.get("server_env", {}), "GK_PORT_FILE": str(port_file)}
    with open(out / "server.log", "wb") as log:
        server = subprocess.Popen(spec["server"], env=server_env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text().strip():
            if server.poll() is not None or time.monotonic() > deadline:
                print("the fake model server did not start", file=sys.stderr)
                return 97
            time.sleep(0.02)
        port = port_file.read_text().strip()
        env = {k: v.replace("{port}", port) for k, v in spec["env"].items()}
        argv = [a.replace("{port}", port) for a in spec["client"]]
        with open(out / "client.out", "wb") as o, open(out / "client.err", "wb") as e:
            try:
                done = subprocess.run(
                    argv,
                    env=env,
                    cwd=spec["cwd"],
                    stdin=subprocess.DEVNULL,
                    stdout=o,
                    stderr=e,
                    timeout=spec["timeout"],
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return 98
        return done.returncode
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
