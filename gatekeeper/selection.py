"""Where policies come from: flags, environment, or the bundled directory (thin I/O)."""

from __future__ import annotations

import os
from pathlib import Path

from gatekeeper.errors import UnknownAgent
from gatekeeper.policy import Policy, bundled_policy_dir, load_policy_dir, load_policy_file

DEFAULT_AGENT = "default"


def policy_dir(flag: str | None) -> Path:
    """--policy-dir, else $GATEKEEPER_POLICY_DIR, else the bundled policies."""
    if flag:
        return Path(flag).expanduser()  # "~/…" in a config file means the home directory
    env = os.environ.get("GATEKEEPER_POLICY_DIR")
    return Path(env).expanduser() if env else bundled_policy_dir()


def agent_name(flag: str | None) -> str:
    """--agent, else $GATEKEEPER_AGENT, else ``default``."""
    return flag or os.environ.get("GATEKEEPER_AGENT") or DEFAULT_AGENT


def select_policy(policy_file: str | None, directory: str | None, agent: str | None) -> Policy:
    """The one policy a CLI command works with."""
    if policy_file:
        return load_policy_file(policy_file)
    policies = load_policy_dir(policy_dir(directory))
    name = agent_name(agent)
    if name not in policies:
        known = ", ".join(sorted(policies))
        raise UnknownAgent(f"no agent named {name!r} (agents: {known}); pick one with --agent")
    return policies[name]
