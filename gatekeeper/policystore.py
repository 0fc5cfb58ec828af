"""The policies a daemon serves: loading, reloading, watching, and a human's "always".

:class:`PolicyStore` owns the loaded agents (immutable :class:`~gatekeeper.policy.Policy`
objects, replaced whole on reload), the session rules a human added with "always" (they survive
reloads and last while the daemon runs), and writing such a rule into an agent file. A reload
that fails — a broken file, an unreadable directory, a default agent that would disappear —
keeps the previous policies and says why.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path
from typing import Any

from gatekeeper.engine import Session
from gatekeeper.errors import GatekeeperError, PolicyError
from gatekeeper.policy import Policy, Rule, RuleSet, load_policy_dir
from gatekeeper.policy_edit import add_allow_rule
from gatekeeper.protocol import ProtocolError
from gatekeeper.sources import OpencodeSources, load_opencode_policies, watched_files

log = logging.getLogger(__name__)


class PolicyStore:
    """The agents the daemon serves, and the rules humans added while it runs."""

    def __init__(
        self,
        policy_dir: Path,
        default_agent: str | None,
        opencode: OpencodeSources | None = None,
    ) -> None:
        self.policy_dir = policy_dir
        self.default_agent = default_agent
        self.opencode = opencode  # opencode's sources served too (None: the directory only)
        self.policies: dict[str, Policy] = {}
        self.reload_error: str | None = None
        self.session: dict[str, dict[str, list[Rule]]] = {}
        self.session_sets: dict[str, Session] = {}
        self._mtimes: dict[str, tuple[float, int]] | None = {}

    def load(self) -> None:
        """Load the policy directory; raises on error (used at start)."""
        self.policies = self._read()
        self._mtimes = self.scan()

    def _read(self) -> dict[str, Policy]:
        policies = load_policy_dir(self.policy_dir)
        if self.opencode is not None:
            for name, policy in load_opencode_policies(self.opencode).items():
                if name in policies:
                    raise PolicyError(
                        f"agent {name!r} is defined both by {policies[name].path} and by "
                        f"opencode's sources ({policy.path}): rename one"
                    )
                policies[name] = policy
        if self.default_agent and self.default_agent not in policies:
            known = ", ".join(sorted(policies))
            raise PolicyError(
                f"default agent {self.default_agent!r} is not in {self.policy_dir} "
                f"(agents: {known}); pick one with --default-agent"
            )
        return policies

    def reload(self) -> str | None:
        """Reload; on error keep the policies running and return why."""
        self._mtimes = self.scan()
        try:
            policies = self._read()
        except GatekeeperError as exc:
            self.reload_error = str(exc)
            log.error("reload failed, keeping the previous policies: %s", exc)
            return self.reload_error
        self.policies = policies
        self.reload_error = None
        log.info("policies reloaded: %s", ", ".join(sorted(policies)))
        return None

    def scan(self) -> dict[str, tuple[float, int]] | None:
        """(mtime, size) of each ``*.md`` entry: what the watcher compares. Never opens one.
        None when the directory cannot be listed right now (out of descriptors …)."""
        out: dict[str, tuple[float, int]] = {}
        try:
            entries = list(os.scandir(self.policy_dir))
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                return None  # a passing shortage, not a change: look again later
            return {}
        for entry in entries:
            if entry.name.endswith(".md"):
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    out[entry.name] = (st.st_mtime, st.st_size)
        if self.opencode is not None:
            try:
                files = watched_files(self.opencode)
            except OSError:
                return None
            for f in files:
                with contextlib.suppress(OSError):
                    st = f.stat()
                    out[str(f)] = (st.st_mtime, st.st_size)
        return out

    def changed(self) -> bool:
        now = self.scan()
        return now is not None and now != self._mtimes

    def policy_for(self, agent: str | None, rid: Any) -> Policy:
        name = agent or self.default_agent
        if not name:
            raise ProtocolError(
                "unknown_agent", "no agent given and the daemon has no default", rid
            )
        policy = self.policies.get(name)
        if policy is None:
            known = ", ".join(sorted(self.policies))
            raise ProtocolError("unknown_agent", f"no agent named {name!r} (agents: {known})", rid)
        return policy

    def add_session_rule(self, agent: str, permission: str, pattern: str, who: str) -> None:
        """A human's "always": an allow rule for this agent while the daemon runs."""
        rules = self.session.setdefault(agent, {}).setdefault(permission, [])
        rules.append(Rule(pattern, "allow", f"session:{who}", f"always.{permission}"))
        self.session_sets[agent] = {
            perm: RuleSet.build(perm, tuple(rs)) for perm, rs in self.session[agent].items()
        }

    def persist_rule(self, agent: str, permission: str, pattern: str, subject: str | None) -> str:
        """Write an "always" rule into the agent's file (in place), then reload; "file:line"."""
        policy = self.policies.get(agent)
        if policy is None:
            raise GatekeeperError(f"agent {agent!r} is no longer loaded")
        path = Path(policy.path)
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GatekeeperError(f"{path}: cannot read: {exc}") from None
        new_text, line = add_allow_rule(text, str(path), permission, pattern, subject)
        tmp = path.with_name(f".{path.name}.gatekeeper-tmp")
        try:
            tmp.write_bytes(new_text.encode("utf-8"))
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise GatekeeperError(f"{path}: cannot write: {exc}") from None
        error = self.reload()
        if error is not None:
            raise GatekeeperError(f"saved to {path}:{line}, but the reload failed: {error}")
        log.info("saved always rule %r for %s to %s:%d", pattern, agent, path, line)
        return f"{path}:{line}"
