"""Every policy source opencode reads, merged as opencode merges them.

opencode (checked against opencode-ai 1.18.33, the version tests/e2e pins; docs/policy.md,
"Sources and precedence") builds an agent's permissions from:

1. the top-level ``permission`` of its config files, deep-merged in this order (later wins):
   the global ``~/.config/opencode/{config.json,opencode.json,opencode.jsonc}``, then the
   project's ``opencode.json``/``opencode.jsonc`` from the work tree's root down to the project
   directory (in each directory ``.json`` before ``.jsonc``), then ``opencode.json[c]`` inside
   each ``.opencode`` directory;
2. the agent's own definition, deep-merged the same way from the ``agent`` key of those config
   files and the agent files of each config directory (``agent/``, ``agents/``, recursively):
   ``~/.config/opencode``, then the project's ``.opencode`` directories (deepest first, up to
   the work tree), then ``~/.opencode``;
3. the agent's rules = the top-level rules, then the agent's rules: one flat list, and the
   last rule whose permission *and* pattern match wins (``Permission.evaluate`` is
   ``rules.findLast``) — so a later ``"*"`` permission key overrides earlier named ones.

"Deep-merged" is remeda's ``mergeDeep``: a key already present keeps its place and takes the
new value (two maps merge key by key; anything else is replaced); a new key goes at the end.
Order matters because the last matching rule wins.

The merge is pure (:func:`merge_deep`, :func:`flatten`, :func:`build_policy`); the loader
(:func:`load_agents`) reads the files. JSONC (comments, trailing commas) is read by a small
parser here that keeps every key's line, so every rule can say where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from gatekeeper.errors import PolicyError
from gatekeeper.patterns import pattern_regex
from gatekeeper.policy import (
    ACTIONS,
    MAX_POLICY_BYTES,
    TOOL_PERMISSIONS,
    Action,
    Policy,
    PolicyTest,
    Rule,
    RuleSet,
    load_policy_file,
)

# An opencode permission object as merged: permission → one rule (``bash: ask``) or
# pattern → rule, in order. Each Rule carries the file and line it came from.
PermValue = Rule | dict[str, Rule]
PermMap = dict[str, PermValue]


# --------------------------------------------------------------------------------------------
# JSONC with line numbers


@dataclass(frozen=True, slots=True)
class JNode:
    """A JSON value and the line it starts on; objects keep (key, key line, value) in order."""

    value: object  # str, int, float, bool, None, list[JNode] or list[tuple[str, int, JNode]]
    line: int
    kind: str  # "object", "array" or "scalar"

    def get(self, key: str) -> JNode | None:
        if self.kind != "object":
            return None
        found = None
        for k, _, v in self.items():
            if k == key:
                found = v  # JSON: the last duplicate wins, as in JavaScript
        return found

    def items(self) -> list[tuple[str, int, JNode]]:
        if self.kind != "object":
            return []
        return cast("list[tuple[str, int, JNode]]", self.value)


class _JsoncParser:
    def __init__(self, text: str, path: str) -> None:
        self.s = text
        self.i = 0
        self.path = path

    def line(self) -> int:
        return self.s.count("\n", 0, self.i) + 1

    def fail(self, why: str) -> PolicyError:
        return PolicyError(f"{self.path}:{self.line()}: invalid JSONC: {why}")

    def skip(self) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r\n\ufeff":
                self.i += 1
            elif s.startswith("//", self.i):
                end = s.find("\n", self.i)
                self.i = len(s) if end < 0 else end
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    raise self.fail("a /* comment is not closed")
                self.i = end + 2
            else:
                return

    def value(self) -> JNode:
        self.skip()
        if self.i >= len(self.s):
            raise self.fail("unexpected end of the file")
        c = self.s[self.i]
        line = self.line()
        if c == "{":
            return self.obj(line)
        if c == "[":
            return self.arr(line)
        if c == '"':
            return JNode(self.string(), line, "scalar")
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return JNode(val, line, "scalar")
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in "+-0123456789.eE":
            self.i += 1
        text = self.s[start : self.i]
        try:
            number: object = float(text) if any(ch in text for ch in ".eE") else int(text)
        except ValueError:
            raise self.fail(f"unexpected {c!r}") from None
        return JNode(number, line, "scalar")

    def string(self) -> str:
        out: list[str] = []
        self.i += 1
        s = self.s
        while True:
            if self.i >= len(s):
                raise self.fail("a string is not closed")
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                esc = s[self.i + 1 : self.i + 2]
                simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n"}
                simple |= {"r": "\r", "t": "\t"}
                if esc in simple:
                    out.append(simple[esc])
                    self.i += 2
                elif esc == "u":
                    try:
                        out.append(chr(int(s[self.i + 2 : self.i + 6], 16)))
                    except ValueError:
                        raise self.fail("a bad \\u escape") from None
                    self.i += 6
                else:
                    raise self.fail(f"a bad escape \\{esc}")
            elif c == "\n":
                raise self.fail("a string runs past the end of the line")
            else:
                out.append(c)
                self.i += 1

    def obj(self, line: int) -> JNode:
        self.i += 1
        items: list[tuple[str, int, JNode]] = []
        while True:
            self.skip()
            if self.s.startswith("}", self.i):
                self.i += 1
                return JNode(items, line, "object")
            if not self.s.startswith('"', self.i):
                raise self.fail("expected a quoted key or '}'")
            kline = self.line()
            key = self.string()
            self.skip()
            if not self.s.startswith(":", self.i):
                raise self.fail(f"expected ':' after {key!r}")
            self.i += 1
            items.append((key, kline, self.value()))
            self.skip()
            if self.s.startswith(",", self.i):
                self.i += 1  # a trailing comma before '}' is fine in JSONC
            elif not self.s.startswith("}", self.i):
                raise self.fail("expected ',' or '}'")

    def arr(self, line: int) -> JNode:
        self.i += 1
        items: list[JNode] = []
        while True:
            self.skip()
            if self.s.startswith("]", self.i):
                self.i += 1
                return JNode(items, line, "array")
            items.append(self.value())
            self.skip()
            if self.s.startswith(",", self.i):
                self.i += 1
            elif not self.s.startswith("]", self.i):
                raise self.fail("expected ',' or ']'")


def parse_jsonc(text: str, path: str) -> JNode:
    """Parse JSON with comments and trailing commas (opencode's config files), keeping lines."""
    p = _JsoncParser(text, path)
    node = p.value()
    p.skip()
    if p.i != len(text):
        raise p.fail("text after the end of the value")
    return node


# --------------------------------------------------------------------------------------------
# The pure merge


def _action(value: object, where: str, key: str) -> Action:
    if isinstance(value, str) and value in ACTIONS:
        return value
    raise PolicyError(f"{where}: {key}: {value!r} is not one of allow, ask, deny")


def permission_from_json(node: JNode, path: str, display: str, key: str = "permission") -> PermMap:
    """An opencode.json ``permission`` value (an action, or permission → action or patterns)."""
    if node.kind == "scalar":
        return {
            "*": Rule(
                "*", _action(node.value, f"{path}:{node.line}", key), f"{display}:{node.line}", key
            )
        }
    if node.kind != "object":
        raise PolicyError(f"{path}:{node.line}: {key}: must be an action or an object")
    out: PermMap = {}
    for perm, line, v in node.items():
        pkey = f"{key}.{perm}"
        if v.kind == "scalar":
            out[perm] = Rule(
                "*", _action(v.value, f"{path}:{v.line}", pkey), f"{display}:{line}", pkey
            )
        elif v.kind == "object":
            out[perm] = {
                pat: Rule(
                    pat,
                    _action(a.value, f"{path}:{a.line}", f"{pkey}.{pat!r}"),
                    f"{display}:{pl}",
                    pkey,
                )
                for pat, pl, a in v.items()
            }
        else:
            raise PolicyError(f"{path}:{v.line}: {pkey}: must be an action or an object")
    return out


def permission_from_policy(policy: Policy, display: str) -> PermMap:
    """An agent file's ``permission:`` as opencode holds it, each rule re-sourced to
    ``display`` (its path as shown)."""

    def src(rule: Rule) -> Rule:
        line = rule.source.rpartition(":")[2]
        return replace(rule, source=f"{display}:{line}")

    out: PermMap = {}
    for key, scalar in policy.permission_keys:
        rs = policy.fallback if key == "*" else policy.rulesets.get(key)
        if rs is None:
            continue
        if scalar:
            out[key] = src(rs.rules[0])
        else:
            out[key] = {r.pattern: src(r) for r in rs.rules}
    return out


def merge_deep(target: PermMap, source: PermMap) -> PermMap:
    """remeda's ``mergeDeep`` on permission objects: a key already in ``target`` keeps its place
    and takes ``source``'s value (two maps merge key by key); new keys go at the end."""
    out: PermMap = dict(target)
    for key, value in source.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = {**old, **value}
        else:
            out[key] = value
    return out


def flatten(perm: PermMap, home: str | None = None) -> list[tuple[str, Rule]]:
    """opencode's ``Permission.fromConfig``: (permission, rule) in order; ``~/`` and ``$HOME``
    at the start of a pattern are the home directory, as opencode expands them."""
    out: list[tuple[str, Rule]] = []
    for key, value in perm.items():
        rules = [value] if isinstance(value, Rule) else list(value.values())
        for r in rules:
            out.append((key, replace(r, pattern=_expand_home(r.pattern, home))))
    return out


def _expand_home(pattern: str, home: str | None) -> str:
    if home is None:
        return pattern
    for prefix, cut in (("~/", 1), ("$HOME/", 5)):
        if pattern.startswith(prefix):
            return home + pattern[cut:]
    if pattern in ("~", "$HOME"):
        return home
    return pattern


def _wild(name: str, pattern: str) -> bool:
    return pattern_regex(pattern).fullmatch(name) is not None


def build_policy(
    name: str,
    path: str,
    rules: list[tuple[str, Rule]],
    *,
    disabled: dict[str, Rule] | None = None,
    tests: tuple[PolicyTest, ...] = (),
    warnings: tuple[str, ...] = (),
) -> Policy:
    """A :class:`Policy` that decides as opencode's ``findLast`` over the flat ``rules``: each
    named permission gets every rule whose permission key matches it (``"*"`` included), in
    order; permissions no key names get the ``"*"`` rules (the fallback)."""
    names = [k for k in dict.fromkeys(k for k, _ in rules) if not any(c in k for c in "*?")]
    rulesets: dict[str, RuleSet] = {}
    for perm in names:
        mine = [r for k, r in rules if _wild(perm, k)]
        rulesets[perm] = RuleSet.build(
            perm,
            tuple(replace(r, origin=f"permission.{perm}", index=i) for i, r in enumerate(mine)),
        )
    star = [r for k, r in rules if k == "*"]
    fallback = (
        RuleSet.build(
            "*", tuple(replace(r, origin="permission.*", index=i) for i, r in enumerate(star))
        )
        if star
        else None
    )
    return Policy(
        name=name,
        path=path,
        rulesets=rulesets,
        fallback=fallback,
        disabled=disabled or {},
        tests=tests,
        warnings=warnings,
        permission_keys=tuple((k, False) for k in dict.fromkeys(k for k, _ in rules)),
    )


# --------------------------------------------------------------------------------------------
# The loader


@dataclass(frozen=True, slots=True)
class OpencodeSources:
    """Where opencode looks: the project directory and the user's global config."""

    project: Path | None
    config_dir: Path  # ~/.config/opencode ($XDG_CONFIG_HOME/opencode)
    home: Path

    @classmethod
    def default(cls, project: str | Path | None) -> OpencodeSources:
        home = Path(os.environ.get("HOME") or Path.home())
        base = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        return cls(
            Path(project).resolve() if project is not None else None,
            Path(base) / "opencode",
            home,
        )

    def display(self, path: Path) -> str:
        """How a source file is shown: relative to the project, else with ``~``."""
        if self.project is not None:
            try:
                return path.relative_to(self.project).as_posix()
            except ValueError:
                pass
        try:
            return "~/" + path.relative_to(self.home).as_posix()
        except ValueError:
            return str(path)

    def worktree(self) -> Path | None:
        """The git work tree of the project (opencode's ``worktree``), else None (then opencode
        looks for config files all the way up)."""
        if self.project is None:
            return None
        for d in (self.project, *self.project.parents):
            if (d / ".git").exists():
                return d
        return None

    def _up(self, targets: tuple[str, ...]) -> list[Path]:
        """opencode's ``Filesystem.up``: from the project up to the work tree (or /), the
        targets that exist in each directory, deepest first."""
        if self.project is None:
            return []
        stop = self.worktree()
        found: list[Path] = []
        for d in (self.project, *self.project.parents):
            found.extend(d / t for t in targets if (d / t).exists())
            if d == stop:
                break
        return found

    def config_files(self) -> list[Path]:
        """Config files in merge order (lowest precedence first), existing or not."""
        files = [self.config_dir / n for n in ("config.json", "opencode.json", "opencode.jsonc")]
        files += list(reversed(self._up(("opencode.jsonc", "opencode.json"))))
        return files

    def directories(self) -> list[Path]:
        """Config directories in merge order: global config, project .opencode (deepest
        first), ~/.opencode."""
        dirs = [self.config_dir, *self._up((".opencode",))]
        if (self.home / ".opencode").is_dir():
            dirs.append(self.home / ".opencode")
        return list(dict.fromkeys(dirs))


@dataclass(slots=True)
class AgentSources:
    """One agent as merged from every source: what explain shows and the daemon serves."""

    name: str
    files: list[str] = field(default_factory=list)  # every file that defined part of it
    top: PermMap = field(default_factory=dict)  # the merged top-level permission
    own: PermMap = field(default_factory=dict)  # the agent's merged permission
    disabled: dict[str, Rule] = field(default_factory=dict)
    tests: tuple[PolicyTest, ...] = ()
    warnings: tuple[str, ...] = ()
    path: str = ""  # the file a human's "always" is written to (its agent file, if any)
    disable: bool = False

    def rules(self, home: str | None) -> list[tuple[str, Rule]]:
        return flatten(self.top, home) + flatten(self.own, home)

    def policy(self, home: str | None) -> Policy:
        return build_policy(
            self.name,
            self.path or (self.files[-1] if self.files else self.name),
            self.rules(home),
            disabled=self.disabled,
            tests=self.tests,
            warnings=self.warnings,
        )


@dataclass(slots=True)
class Loaded:
    """Everything read from opencode's sources."""

    agents: dict[str, AgentSources]
    top_files: list[str]  # config files that gave a top-level permission
    read: list[Path]  # every file read (what a watcher compares)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"{path}: larger than 1 MiB: not a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not valid UTF-8") from None


def _agent_md_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(agent name, file) of ``{agent,agents}/**/*.md`` under an opencode config directory."""
    for sub in ("agent", "agents"):
        base = directory / sub
        if not base.is_dir():
            continue
        for f in sorted(base.rglob("*.md")):
            if f.is_file():
                yield f.relative_to(base).with_suffix("").as_posix(), f


def _tools_from_json(node: JNode, display: str) -> dict[str, Rule]:
    disabled: dict[str, Rule] = {}
    if node.kind != "object":
        return disabled
    for tool, line, v in node.items():
        if v.value is False and "*" not in tool:
            for perm in TOOL_PERMISSIONS.get(tool, (tool,)):
                disabled.setdefault(perm, Rule("*", "deny", f"{display}:{line}", f"tools.{tool}"))
    return disabled


def load_agents(src: OpencodeSources) -> Loaded:
    """Read every source opencode reads and merge it per agent, in opencode's order."""
    top: PermMap = {}
    top_files: list[str] = []
    agents: dict[str, AgentSources] = {}
    read: list[Path] = []

    def agent(name: str) -> AgentSources:
        return agents.setdefault(name, AgentSources(name))

    def config(path: Path) -> None:
        nonlocal top
        if not path.is_file():
            return
        read.append(path)
        shown = src.display(path)
        root = parse_jsonc(_read_text(path), str(path))
        if root.kind != "object":
            raise PolicyError(f"{path}:1: an opencode config is a JSON object")
        perm = root.get("permission")
        if perm is not None:
            top = merge_deep(top, permission_from_json(perm, str(path), shown))
            top_files.append(shown)
        agent_node = root.get("agent")
        if agent_node is not None and agent_node.kind == "object":
            for name, _, spec in agent_node.items():
                a = agent(name)
                a.files.append(shown)
                if spec.kind != "object":
                    continue
                p = spec.get("permission")
                if p is not None:
                    a.own = merge_deep(
                        a.own, permission_from_json(p, str(path), shown, f"agent.{name}.permission")
                    )
                t = spec.get("tools")
                if t is not None:
                    a.disabled |= _tools_from_json(t, shown)
                d = spec.get("disable")
                if d is not None:
                    a.disable = d.value is True

    for f in src.config_files():
        config(f)
    for d in src.directories():
        if d.name == ".opencode":
            for n in ("opencode.json", "opencode.jsonc"):
                config(d / n)
        for name, f in _agent_md_files(d):
            read.append(f)
            shown = src.display(f)
            pol = load_policy_file(f, name)
            a = agent(pol.name)
            a.files.append(shown)
            a.path = str(f)
            a.own = merge_deep(a.own, permission_from_policy(pol, shown))
            a.disabled |= {
                k: replace(r, source=f"{shown}:{r.source.rpartition(':')[2]}")
                for k, r in pol.disabled.items()
            }
            a.tests += pol.tests
            a.warnings += pol.warnings
    for a in agents.values():
        a.top = top
    return Loaded({n: a for n, a in agents.items() if not a.disable}, top_files, read)


def load_opencode_policies(src: OpencodeSources) -> dict[str, Policy]:
    """The agents opencode defines, each with its permissions merged from every source."""
    loaded = load_agents(src)
    return {name: a.policy(str(src.home)) for name, a in loaded.agents.items()}


def watched_files(src: OpencodeSources) -> list[Path]:
    """Every file whose change can change what :func:`load_agents` reads (existing or not)."""
    out = list(src.config_files())
    for d in src.directories():
        out += [d / "opencode.json", d / "opencode.jsonc"]
        out += [f for _, f in _agent_md_files(d)]
    return out
