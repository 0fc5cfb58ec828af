"""``gatekeeper serve``: run the daemon in the foreground."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from gatekeeper.audit import FsyncPolicy
from gatekeeper.errors import GatekeeperError
from gatekeeper.paths import default_audit_log, default_socket
from gatekeeper.selection import policy_dir
from gatekeeper.server import ServeConfig, serve
from gatekeeper.sinks import parse_sinks
from gatekeeper.sources import OpencodeSources

CONFIG_KEYS = {
    "policy_dir",
    "socket",
    "audit_log",
    "default_agent",
    "approval_timeout",
    "grace",
    "approvers_need_tty",
    "audit_fsync",
    "audit_max_bytes",
    "audit_keep",
    "max_connections",
    "max_buffered_bytes",
    "idle_line_timeout",
    "audit_sinks",
}
# opencode's policy sources (gatekeeper.sources): also serve the agents opencode defines.
OPENCODE_KEYS = {"opencode_project", "opencode_sources"}
CONFIG_KEYS |= OPENCODE_KEYS


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "gatekeeper" / "config.toml"


def read_config(path: Path | None) -> dict[str, Any]:
    """The [serve] table of the config file (flags override it)."""
    explicit = path is not None
    path = path or default_config_file()
    if not path.exists():
        if explicit:
            raise GatekeeperError(f"{path}: no such config file")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GatekeeperError(f"{path}: cannot read the config file: {exc}") from None
    table = data.get("serve", {})
    if not isinstance(table, dict):
        raise GatekeeperError(f"{path}: [serve] must be a table")
    unknown = set(table) - CONFIG_KEYS
    if unknown:
        raise GatekeeperError(
            f"{path}: unknown key(s) in [serve]: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(CONFIG_KEYS))}"
        )
    return table


def _fsync(value: object) -> FsyncPolicy:
    if value == "always":
        return "always"
    if value == "never":
        return "never"
    if value == "batch":
        return "batch"
    raise GatekeeperError(f"audit_fsync must be always, batch or never, not {value!r}")


def run(
    *,
    policy_dir_flag: str | None,
    socket_flag: str | None,
    audit_log_flag: str | None,
    no_audit: bool,
    default_agent: str | None,
    approval_timeout: float | None,
    grace: float | None,
    config_file: str | None,
    audit_fsync: str | None = None,
) -> int:
    config_path = Path(config_file) if config_file else None
    cfg = read_config(config_path)
    sinks = parse_sinks(
        cfg.get("audit_sinks", []),
        f"{config_path or default_config_file()}: [serve] audit_sinks",
    )
    audit: Path | None
    if no_audit:
        audit = None
    else:
        audit = Path(audit_log_flag or cfg.get("audit_log") or default_audit_log()).expanduser()
    config = ServeConfig(
        socket_path=Path(socket_flag or cfg.get("socket") or default_socket()).expanduser(),
        policy_dir=policy_dir(policy_dir_flag or cfg.get("policy_dir")),
        default_agent=default_agent
        or cfg.get("default_agent")
        or os.environ.get("GATEKEEPER_AGENT")
        or "default",
        audit_log=audit,
        approval_timeout=float(approval_timeout or cfg.get("approval_timeout") or 120.0),
        grace=float(grace if grace is not None else cfg.get("grace", 5.0)),
        approvers_need_tty=bool(cfg.get("approvers_need_tty", True)),
        audit_fsync=_fsync(audit_fsync or cfg.get("audit_fsync") or "batch"),
        audit_max_bytes=int(cfg.get("audit_max_bytes", 10 * 1024 * 1024)),
        audit_keep=int(cfg.get("audit_keep", 20)),
        max_connections=int(cfg.get("max_connections", 1000)),
        max_buffered=int(cfg.get("max_buffered_bytes", 64 << 20)),
        idle_line_timeout=float(cfg.get("idle_line_timeout", 30.0)),
        audit_sinks=sinks,
        opencode=opencode_sources(cfg),
    )
    logging.getLogger("gatekeeper").setLevel(logging.INFO)
    logging.getLogger("gatekeeper").info(
        "gatekeeper serving policies from %s on %s", config.policy_dir, config.socket_path
    )
    return serve(config)


def opencode_sources(cfg: dict[str, Any]) -> OpencodeSources | None:
    """``opencode_project = "/path"`` (or ``opencode_sources = true``: the global config
    only) in [serve]: the daemon serves opencode's agents too, merged from every source."""
    project = cfg.get("opencode_project")
    if project is None and not cfg.get("opencode_sources", False):
        return None
    if project is not None and not isinstance(project, str):
        raise GatekeeperError("opencode_project must be a directory path")
    return OpencodeSources.default(project)
