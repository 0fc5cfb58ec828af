"""``gatekeeper hook …``: the agent hooks, and installers that wire them into each harness.

The hooks themselves live in :mod:`gatekeeper.hooks` (standard library only, so that a hook
process starts fast); the harness runs them as ``python -m gatekeeper.hooks``, with the
absolute path of this interpreter, so that a PATH without gatekeeper cannot turn the hook
into "command not found" (which Claude Code and Codex treat as no objection).

Every installer merges into what is there (other hooks and settings are kept), is
idempotent (installing twice leaves one entry), writes atomically, and has an ``uninstall``
twin. What each writes:

* Claude Code — a ``PreToolUse`` entry in a settings file; its command ends in
  ``|| { echo …; exit 2; }`` so that a hook that cannot run at all blocks (exit 2) instead
  of being a non-blocking error, and the hook's own deadline sits well inside the timeout
  Claude Code gives it (Claude Code runs the tool when it kills a slow hook).
* Codex — a ``PreToolUse`` group in ``$CODEX_HOME/hooks.json`` and the trust entry Codex
  requires for it in ``config.toml`` (an untrusted hook is skipped silently).
* opencode — the plugin file in opencode's plugin directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from gatekeeper import hooks
from gatekeeper.errors import GatekeeperError

PLUGIN = Path(__file__).resolve().parent.parent / "integrations" / "opencode-plugin.js"
CLAUDE_MATCHER = "Bash|Edit|MultiEdit|Write|NotebookEdit"
CODEX_MATCHER = "*"
# (harness timeout, the hook's own deadline) in seconds: without --wait, and with it.
TIMEOUTS = {False: (60, 20), True: (600, 570)}
MARK = "gatekeeper.hooks"  # how an entry of ours is recognised in a harness's settings


class InstallError(GatekeeperError):
    pass


# --------------------------------------------------------------------------------------------
# Running the hooks


def run_hook(harness: str, *, socket_path: str | None, agent: str | None, wait: bool,
             deadline: float | None) -> int:  # fmt: skip
    argv = [harness]
    if socket_path:
        argv += ["--socket", socket_path]
    if agent:
        argv += ["--agent", agent]
    if wait:
        argv.append("--wait")
    if deadline is not None:
        argv += ["--deadline", str(deadline)]
    return hooks.main(argv)


def opencode_plugin() -> int:
    """Print the opencode plugin shipped with gatekeeper."""
    sys.stdout.write(PLUGIN.read_text(encoding="utf-8"))
    return 0


# --------------------------------------------------------------------------------------------
# Files


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InstallError(f"{path} is not valid JSON ({exc}); not changing it") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path} does not hold a JSON object; not changing it")
    return data


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically, keeping its mode (0600 for a new file: it may hold ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hook_argv(
    harness: str, *, agent: str | None, socket_path: str | None, wait: bool, deadline: int
) -> list[str]:
    """The hook's command line (see :func:`hook_command` for the flags)."""
    flags = ["-P", "-E"] + (["-s"] if sys.prefix != sys.base_prefix else [])
    argv = [sys.executable, *flags, "-m", MARK, harness, "--deadline", str(deadline)]
    if agent:
        argv += ["--agent", agent]
    if socket_path:
        argv += ["--socket", str(Path(socket_path).absolute())]
    if wait:
        argv.append("--wait")
    return argv


def hook_command(
    harness: str, *, agent: str | None, socket_path: str | None, wait: bool, deadline: int
) -> str:
    """The shell line a harness runs: this interpreter, by absolute path, and a fallback
    that blocks (exit 2, the reason on stderr) when the hook cannot run or crashes.

    The harness runs it in the project, which the agent can write to: ``-P`` keeps the
    current directory off ``sys.path`` (else a ``gatekeeper/hooks.py`` the agent wrote there
    would be the hook), ``-E`` ignores ``PYTHON*`` variables, and in a virtual environment
    ``-s`` leaves out the user's site-packages as well."""
    argv = hook_argv(harness, agent=agent, socket_path=socket_path, wait=wait, deadline=deadline)
    return (
        " ".join(shlex.quote(a) for a in argv)
        + " || { echo 'gatekeeper: the hook could not run; blocking' >&2; exit 2; }"
    )


def _is_ours(hook: Any, harness: str) -> bool:
    """Whether one hook entry is gatekeeper's hook for ``harness`` (another tool's hook that
    merely mentions gatekeeper is not)."""
    return isinstance(hook, dict) and f" -m {MARK} {harness} " in str(hook.get("command", ""))


def _only_ours(group: Any, harness: str) -> bool:
    hooks = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(hooks, list) and bool(hooks) and all(_is_ours(h, harness) for h in hooks)


def _without_ours(groups: list[Any], harness: str) -> tuple[list[Any], bool]:
    """The groups with gatekeeper's hook entries taken out (a group left empty goes too);
    whether there were any. Other hooks, in groups of their own or beside ours, stay."""
    out: list[Any] = []
    found = False
    for g in groups:
        hooks = g.get("hooks") if isinstance(g, dict) else None
        if not isinstance(hooks, list) or not any(_is_ours(h, harness) for h in hooks):
            out.append(g)
            continue
        found = True
        rest = [h for h in hooks if not _is_ours(h, harness)]
        if rest:
            out.append({**g, "hooks": rest})
    return out, found


# --------------------------------------------------------------------------------------------
# Claude Code


def claude_settings(user: bool, project: str | None, settings: str | None) -> Path:
    if settings:
        return Path(settings)
    if project:
        return Path(project) / ".claude" / "settings.json"
    return Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "settings.json"


def install_claude(path: Path, *, agent: str | None, socket_path: str | None, wait: bool) -> str:
    timeout, deadline = TIMEOUTS[wait]
    data = _read_json(path)
    all_hooks = data.setdefault("hooks", {})
    if not isinstance(all_hooks, dict):
        raise InstallError(f"{path}: 'hooks' is not an object; not changing it")
    groups = all_hooks.setdefault("PreToolUse", [])
    if not isinstance(groups, list):
        raise InstallError(f"{path}: 'hooks.PreToolUse' is not a list; not changing it")
    command = hook_command(
        "claude-code", agent=agent, socket_path=socket_path, wait=wait, deadline=deadline
    )
    # onFailure "block": a hook Claude Code had to kill at its timeout, or that exited with
    # an error, blocks the call (the `|| exit 2` fallback covers versions without it).
    hook = {"type": "command", "command": command, "timeout": timeout, "onFailure": "block"}
    entry = {"matcher": CLAUDE_MATCHER, "hooks": [hook]}
    kept, _ = _without_ours(groups, "claude-code")
    all_hooks["PreToolUse"] = [*kept, entry]
    _write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return command


def uninstall_claude(path: Path) -> bool:
    data = _read_json(path)
    all_hooks = data.get("hooks")
    groups = all_hooks.get("PreToolUse") if isinstance(all_hooks, dict) else None
    if not isinstance(groups, list):
        return False
    kept, found = _without_ours(groups, "claude-code")
    if not found:
        return False
    data["hooks"]["PreToolUse"] = kept
    if not data["hooks"]["PreToolUse"]:
        del data["hooks"]["PreToolUse"]
    if not data["hooks"]:
        del data["hooks"]
    _write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return True


# --------------------------------------------------------------------------------------------
# Codex


def codex_home(explicit: str | None) -> Path:
    """CODEX_HOME as Codex sees it: resolved (Codex canonicalises it, and the trust key holds
    the path of hooks.json — through a symlink it would not match, and Codex would skip the
    hook without a word)."""
    home = Path(explicit or os.environ.get("CODEX_HOME") or Path.home() / ".codex")
    return home.expanduser().resolve()


def codex_trusted_hash(command: str, timeout: int, matcher: str) -> str:
    """What Codex (0.171) records as ``trusted_hash`` for one command hook: the sha256 of the
    hook's identity as compact JSON with sorted keys."""
    identity = {
        "event_name": "pre_tool_use",
        "matcher": matcher,
        "hooks": [{"type": "command", "command": command, "timeout": timeout, "async": False}],
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def install_codex(home: Path, *, agent: str | None, socket_path: str | None, wait: bool) -> str:
    timeout, deadline = TIMEOUTS[wait]
    hooks_json = home / "hooks.json"
    data = _read_json(hooks_json)
    all_hooks = data.setdefault("hooks", {})
    if not isinstance(all_hooks, dict):
        raise InstallError(f"{hooks_json}: 'hooks' is not an object; not changing it")
    groups = all_hooks.setdefault("PreToolUse", [])
    if not isinstance(groups, list):
        raise InstallError(f"{hooks_json}: 'hooks.PreToolUse' is not a list; not changing it")
    command = hook_command("codex", agent=agent, socket_path=socket_path, wait=wait,
                           deadline=deadline)  # fmt: skip
    entry = {
        "matcher": CODEX_MATCHER,
        "hooks": [{"type": "command", "command": command, "timeout": timeout}],
    }
    # Replace ours where it stands: the trust keys of other groups name their positions (a
    # group that mixes ours with other hooks is left alone: changing it would untrust them).
    index = next((i for i, g in enumerate(groups) if _only_ours(g, "codex")), len(groups))
    groups[index : index + 1] = [entry]
    config_path = home / "config.toml"
    config = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    config = _drop_trust_of(config, hooks_json, index)
    if config and not config.endswith("\n"):
        config += "\n"
    config += (
        f'\n[hooks.state."{hooks_json}:pre_tool_use:{index}:0"]\n'
        "enabled = true\n"
        f'trusted_hash = "{codex_trusted_hash(command, timeout, CODEX_MATCHER)}"\n'
    )
    _write(hooks_json, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _write(config_path, config)
    return command


def _drop_trust_of(config: str, hooks_json: Path, index: int) -> str:
    """``config.toml`` without the trust table of group ``index`` in ``hooks_json``."""
    header = re.compile(
        r'^\[hooks\.state\."' + re.escape(f"{hooks_json}:pre_tool_use:{index}:") + r'\d+"\]$'
    )
    out: list[str] = []
    skipping = False
    for line in config.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = bool(header.match(stripped))
        if not skipping:
            out.append(line)
    return "".join(out).rstrip("\n") + ("\n" if out else "")


def uninstall_codex(home: Path) -> bool:
    hooks_json = home / "hooks.json"
    data = _read_json(hooks_json)
    groups = (data.get("hooks") or {}).get("PreToolUse")
    if not isinstance(groups, list):
        return False
    index = next((i for i, g in enumerate(groups) if _only_ours(g, "codex")), None)
    if index is None:
        return False
    del groups[index]
    if not groups:
        del data["hooks"]["PreToolUse"]
    _write(hooks_json, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    config_path = home / "config.toml"
    if config_path.exists():
        config = _drop_trust_of(config_path.read_text(encoding="utf-8"), hooks_json, index)
        _write(config_path, _shift_trust(config, hooks_json, index))
    return True


def _shift_trust(config: str, hooks_json: Path, removed: int) -> str:
    """Trust keys of the groups after a removed one, moved up one position with them."""
    header = re.compile(
        r'^(\s*\[hooks\.state\."' + re.escape(f"{hooks_json}:pre_tool_use:") + r')(\d+)(:\d+"\].*)$'
    )

    def shift(line: str) -> str:
        body = line.rstrip("\n")
        m = header.match(body)
        if m is None or int(m.group(2)) <= removed:
            return line
        return f"{m.group(1)}{int(m.group(2)) - 1}{m.group(3)}{line[len(body) :]}"

    return "".join(shift(line) for line in config.splitlines(keepends=True))


# --------------------------------------------------------------------------------------------
# opencode


def opencode_dir(user: bool, project: str | None, directory: str | None) -> Path:
    if directory:
        return Path(directory)
    if project:
        return Path(project) / ".opencode" / "plugin"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "opencode" / "plugin"


def install_opencode(directory: Path) -> Path:
    target = directory / "gatekeeper.js"
    _write(target, PLUGIN.read_text(encoding="utf-8"))
    target.chmod(0o644)
    return target


def uninstall_opencode(directory: Path) -> bool:
    target = directory / "gatekeeper.js"
    if not target.exists():
        return False
    target.unlink()
    return True


# --------------------------------------------------------------------------------------------
# The command


def install(args: Any) -> int:
    removing = args.hook_kind == "uninstall"
    if args.harness == "claude-code":
        path = claude_settings(args.user, args.project, args.settings)
        if removing:
            done = uninstall_claude(path)
            print(f"{'removed gatekeeper from' if done else 'no gatekeeper hook in'} {path}")
            return 0
        command = install_claude(path, agent=args.agent, socket_path=args.socket, wait=args.wait)
        print(f"installed the PreToolUse hook in {path}:\n  {command}")
        return 0
    if args.harness == "codex":
        home = codex_home(args.codex_home)
        if removing:
            done = uninstall_codex(home)
            print(f"{'removed gatekeeper from' if done else 'no gatekeeper hook in'} {home}")
            return 0
        command = install_codex(home, agent=args.agent, socket_path=args.socket, wait=args.wait)
        print(
            f"installed the PreToolUse hook in {home / 'hooks.json'} (trusted in "
            f"{home / 'config.toml'}):\n  {command}"
        )
        return 0
    directory = opencode_dir(args.user, args.project, args.dir)
    if removing:
        done = uninstall_opencode(directory)
        print(f"{'removed' if done else 'no'} {directory / 'gatekeeper.js'}")
        return 0
    print(f"installed the plugin as {install_opencode(directory)}")
    return 0
