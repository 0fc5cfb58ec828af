"""Agent files (markdown + YAML frontmatter) → typed, compiled policies.

Parsing is pure (:func:`parse_policy` takes text); :func:`load_policy_file` and
:func:`load_policy_dir` are the thin I/O layer. Line numbers are kept for every rule so that
every decision can say which line of which file made it.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import yaml

from gatekeeper.errors import PolicyError
from gatekeeper.patterns import Matcher

Action = Literal["allow", "ask", "deny"]
ACTIONS: tuple[Action, ...] = ("allow", "ask", "deny")
STRICTNESS: Mapping[str, int] = {"allow": 0, "ask": 1, "deny": 2}

# Permission keys opencode and friends know. Anything else is accepted (answerable), but a key
# that looks like a misspelling of one of these is an error.
# fmt: off
KNOWN_PERMISSIONS = frozenset(
    {
        "bash", "edit", "write", "read", "webfetch", "websearch", "codesearch",
        "external_directory", "doom_loop", "task", "skill", "list", "glob", "grep", "lsp",
        "todowrite", "todoread", "patch", "question", "mcp",
    }
)
# Top-level frontmatter keys of opencode / Claude Code agent files. Others are only warned about.
KNOWN_TOP_LEVEL = frozenset(
    {
        "name", "description", "mode", "model", "temperature", "top_p", "tools", "permission",
        "prompt", "disable", "color", "maxSteps", "steps", "version", "hidden", "options",
        "reasoningEffort", "textVerbosity", "gatekeeper", "allowed-tools", "argument-hint",
    }
)
# fmt: on
# tools: {name: false} denies these permissions (opencode maps edit/write/patch to "edit";
# a disabled edit tool also disables writes, since writes fall back to edit rules).
TOOL_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "bash": ("bash",),
    "edit": ("edit", "write"),
    "patch": ("edit", "write"),
    "multiedit": ("edit", "write"),
    "write": ("write",),
}

KNOWN_TOOLS = frozenset(
    {
        "bash",
        "edit",
        "write",
        "read",
        "grep",
        "glob",
        "list",
        "patch",
        "multiedit",
        "todowrite",
        "todoread",
        "webfetch",
        "websearch",
        "codesearch",
        "task",
        "skill",
        "lsp",
        "question",
    }
)
GATEKEEPER_KEYS = frozenset({"tests"})
TEST_KEYS = frozenset({"command", "path", "permission", "expect", "cwd", "name"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern → action line of an agent file."""

    pattern: str
    action: Action
    source: str  # "backend-engineer.md:29"
    origin: str  # "permission.bash", "permission" (shorthand) or "tools.bash"
    index: int = 0  # position in its rule set: later rules win

    def to_json(self) -> dict[str, str]:
        return {"pattern": self.pattern, "action": self.action, "source": self.source}


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one permission, in file order, compiled into one matcher."""

    permission: str
    rules: tuple[Rule, ...]
    matcher: Matcher = field(compare=False, repr=False)

    @classmethod
    def build(cls, permission: str, rules: tuple[Rule, ...]) -> RuleSet:
        return cls(permission, rules, Matcher([r.pattern for r in rules]))

    def lookup(self, subject: str) -> Rule | None:
        """The last rule whose pattern matches ``subject``, or None."""
        i = self.matcher.match(subject)
        return None if i is None else self.rules[i]


@dataclass(frozen=True, slots=True)
class PolicyTest:
    """A test case an agent file carries for ``gatekeeper policy lint``."""

    permission: str  # "bash", "edit" or "write"
    subject: str  # the command, or the path
    expect: Action
    cwd: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded agent: its permission rules, disabled tools and test cases."""

    name: str
    path: str
    rulesets: Mapping[str, RuleSet]
    fallback: RuleSet | None  # from the `permission: allow` shorthand, for unlisted keys
    disabled: Mapping[str, Rule]  # permission → the tools.X: false line that denies it
    tests: tuple[PolicyTest, ...] = ()
    warnings: tuple[str, ...] = ()
    # The keys of `permission:` as written, "*" included, each with whether its value was one
    # action (True) or a map of patterns: what merging with opencode's other sources needs.
    permission_keys: tuple[tuple[str, bool], ...] = ()
    # permission → what decides it (a tools.X: false rule, its RuleSet, or None); filled lazily.
    _resolved: dict[str, Rule | RuleSet | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def ruleset(self, permission: str) -> RuleSet | None:
        """The rules that decide ``permission``; writes fall back to edit rules."""
        rs = self.rulesets.get(permission)
        if rs is None and permission == "write":
            rs = self.rulesets.get("edit")
        if rs is None:
            rs = self.fallback
        return rs

    def lookup(self, permission: str, subject: str) -> tuple[Action, Rule | None]:
        """Decide one subject for one permission: (action, rule that decided or None)."""
        try:
            what = self._resolved[permission]
        except KeyError:
            what = self.disabled.get(permission) or self.ruleset(permission)
            self._resolved[permission] = what
        if what is None:
            return "ask", None
        if isinstance(what, Rule):
            return "deny", what
        rule = what.lookup(subject)
        if rule is None:
            return "ask", None
        return rule.action, rule

    def permissions(self) -> Iterator[str]:
        yield from self.rulesets


# --------------------------------------------------------------------------------------------
# Parsing


def split_frontmatter(text: str, path: str) -> tuple[str, int]:
    """Return (frontmatter YAML, line number of its first line in the file)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r").rstrip() != "---":
        raise PolicyError(
            f"{path}:1: no YAML frontmatter: an agent file starts with a line '---', then YAML, "
            "then another '---'"
        )
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r").rstrip() in ("---", "..."):
            return "\n".join(lines[1:i]), 2
    raise PolicyError(f"{path}:1: the frontmatter is not closed: add a line '---' after the YAML")


def _suggest(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _file_line(front: str, first_line: int, mark: yaml.Mark) -> int:
    """The file line of a YAML position.

    Counted from the character offset, not from the mark's own line: YAML also breaks lines at
    U+0085, U+2028, U+2029 and a lone CR, which an editor (and ``split_frontmatter``) does not.
    """
    return front.count("\n", 0, int(mark.index)) + first_line


class _Ctx:
    def __init__(self, path: str, first_line: int, front: str = "") -> None:
        self.path = path
        self.display = Path(path).name
        self.first_line = first_line
        self.front = front
        self.warnings: list[str] = []

    def line(self, node: yaml.Node) -> int:
        return _file_line(self.front, self.first_line, node.start_mark)

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{self.line(node)}"

    def source(self, node: yaml.Node) -> str:
        return f"{self.display}:{self.line(node)}"

    def error(self, node: yaml.Node, key: str, message: str) -> PolicyError:
        return PolicyError(f"{self.where(node)}: {key}: {message}")


def _scalar(ctx: _Ctx, node: yaml.Node, key: str) -> object:
    """The Python value of a scalar node, as yaml.safe_load would build it.

    Values that the safe loader cannot build (an impossible date such as ``2024-02-30``, a
    ``!!binary`` that is not base64, a ``!!python/...`` or unknown tag, a ``<<`` merge key)
    are load errors that name the line, not crashes.
    """
    loader = yaml.SafeLoader("")
    try:
        return cast(object, loader.construct_object(node, deep=True))
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ctx.error(
            node,
            key,
            f"cannot read {node.value!r} ({problem}): write it as a plain quoted string "
            "without a YAML tag",
        ) from None
    finally:
        loader.dispose()


def _mapping_items(ctx: _Ctx, node: yaml.Node, key: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error(node, key, "must be a mapping (key: value lines)")
    seen: dict[str, int] = {}
    items: list[tuple[yaml.ScalarNode, yaml.Node]] = []
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise ctx.error(k, key, "keys must be plain strings")
        if k.value in seen:
            raise ctx.error(
                k,
                f"{key}.{k.value}",
                f"duplicate key (first at line {seen[k.value]}): YAML keeps only one of them; "
                "remove or merge the other",
            )
        seen[k.value] = ctx.line(k)
        items.append((k, v))
    return items


def _action(ctx: _Ctx, node: yaml.Node, key: str) -> Action:
    value = _scalar(ctx, node, key) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(value, str) and value in ACTIONS:
        return value
    if not isinstance(node, yaml.ScalarNode):
        kind = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
        raise ctx.error(node, key, f"{kind} is not an action: write one of allow, ask, deny")
    shown = str(node.value)
    if shown.lower() in ACTIONS:
        hint = f" (actions are lower-case: {shown.lower()!r})"
    elif isinstance(value, bool):
        hint = " (YAML reads it as a boolean; write allow, ask or deny)"
    elif value is None:
        hint = " (the value is empty; write allow, ask or deny)"
    else:
        hint = _suggest(shown.lower(), ACTIONS)
    raise ctx.error(node, key, f"{shown!r} is not one of allow, ask, deny{hint}")


def _rules(ctx: _Ctx, permission: str, node: yaml.Node) -> tuple[Rule, ...]:
    key = f"permission.{permission}"
    if isinstance(node, yaml.ScalarNode):
        return (Rule("*", _action(ctx, node, key), ctx.source(node), key),)
    rules: list[Rule] = []
    for k, v in _mapping_items(ctx, node, key):
        pattern = _scalar(ctx, k, key)
        if not isinstance(pattern, str):
            raise ctx.error(
                k, key, f'pattern {k.value!r} is not a string: quote it, e.g. "{k.value}": ask'
            )
        rules.append(
            Rule(pattern, _action(ctx, v, f"{key}.{pattern!r}"), ctx.source(k), key, len(rules))
        )
    return tuple(rules)


_PERMISSION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _permissions(
    ctx: _Ctx, node: yaml.Node
) -> tuple[dict[str, RuleSet], RuleSet | None, tuple[tuple[str, bool], ...]]:
    if isinstance(node, yaml.ScalarNode):
        rule = Rule("*", _action(ctx, node, "permission"), ctx.source(node), "permission")
        return {}, RuleSet.build("*", (rule,)), (("*", True),)
    out: dict[str, RuleSet] = {}
    fallback: RuleSet | None = None
    keys: list[tuple[str, bool]] = []
    for k, v in _mapping_items(ctx, node, "permission"):
        name = k.value
        keys.append((name, isinstance(v, yaml.ScalarNode)))
        if name == "*":
            # opencode's newer form: rules for every permission not listed by name.
            fallback = RuleSet.build("*", _rules(ctx, "*", v))
            continue
        if name not in KNOWN_PERMISSIONS:
            hint = _suggest(name, KNOWN_PERMISSIONS)
            if hint or not _PERMISSION_NAME.match(name):
                raise ctx.error(k, f"permission.{name}", f"unknown permission{hint or ' name'}")
            ctx.warnings.append(
                f"{ctx.where(k)}: permission.{name}: not a permission gatekeeper enforces; "
                "it is loaded and answered for harnesses that ask about it"
            )
        out[name] = RuleSet.build(name, _rules(ctx, name, v))
    return out, fallback, tuple(keys)


def _tools(ctx: _Ctx, node: yaml.Node) -> dict[str, Rule]:
    disabled: dict[str, Rule] = {}
    for k, v in _mapping_items(ctx, node, "tools"):
        value = _scalar(ctx, v, f"tools.{k.value}") if isinstance(v, yaml.ScalarNode) else None
        if not isinstance(value, bool):
            raise ctx.error(v, f"tools.{k.value}", "must be true or false")
        name = k.value
        if name not in KNOWN_TOOLS and "_" not in name and "*" not in name:
            hint = _suggest(name, KNOWN_TOOLS)
            ctx.warnings.append(
                f"{ctx.where(k)}: tools.{name}: not a tool gatekeeper knows{hint}; "
                "a false here denies the permission of that name"
            )
        if value or "*" in name:
            continue  # a pattern of MCP tool names: not a permission gatekeeper decides
        for perm in TOOL_PERMISSIONS.get(name, (name,)):
            disabled.setdefault(perm, Rule("*", "deny", ctx.source(k), f"tools.{k.value}"))
    return disabled


def _tests(ctx: _Ctx, node: yaml.Node) -> tuple[PolicyTest, ...]:
    tests: list[PolicyTest] = []
    for k, v in _mapping_items(ctx, node, "gatekeeper"):
        if k.value not in GATEKEEPER_KEYS:
            hint = _suggest(k.value, GATEKEEPER_KEYS)
            raise ctx.error(k, f"gatekeeper.{k.value}", f"unknown key{hint}; the only key is tests")
        if not isinstance(v, yaml.SequenceNode):
            raise ctx.error(v, "gatekeeper.tests", "must be a list of test cases")
        for item in v.value:
            fields: dict[str, str] = {}
            nodes: dict[str, yaml.Node] = {}
            for tk, tv in _mapping_items(ctx, item, "gatekeeper.tests[]"):
                if tk.value not in TEST_KEYS:
                    raise ctx.error(
                        tk,
                        f"gatekeeper.tests[].{tk.value}",
                        f"unknown key{_suggest(tk.value, TEST_KEYS)}; use command or path, "
                        "permission, expect, cwd, name",
                    )
                val = (
                    _scalar(ctx, tv, f"gatekeeper.tests[].{tk.value}")
                    if isinstance(tv, yaml.ScalarNode)
                    else None
                )
                if not isinstance(val, str):
                    raise ctx.error(tv, f"gatekeeper.tests[].{tk.value}", "must be a string")
                fields[tk.value] = val
                nodes[tk.value] = tv
            if "expect" not in fields:
                raise ctx.error(item, "gatekeeper.tests[]", "missing 'expect: allow|ask|deny'")
            expect = _action(ctx, nodes["expect"], "gatekeeper.tests[].expect")
            if ("command" in fields) == ("path" in fields):
                raise ctx.error(item, "gatekeeper.tests[]", "give exactly one of command or path")
            if "command" in fields:
                if "permission" in fields:
                    raise ctx.error(
                        nodes["permission"],
                        "gatekeeper.tests[].permission",
                        "goes with path, not command (a command is decided by the bash rules)",
                    )
                perm, subject = "bash", fields["command"]
            else:
                perm, subject = fields.get("permission", "edit"), fields["path"]
                if perm not in ("edit", "write"):
                    raise ctx.error(
                        nodes["permission"],
                        "gatekeeper.tests[].permission",
                        "must be edit or write",
                    )
            tests.append(PolicyTest(perm, subject, expect, fields.get("cwd"), ctx.source(item)))
    return tuple(tests)


def parse_policy(text: str, path: str, name: str | None = None) -> Policy:
    """Parse an agent file's text into a :class:`Policy` (pure: no I/O)."""
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise PolicyError(
            f"{path}:{line}: contains a NUL byte: not a text file; remove it or save the file "
            "as plain UTF-8 text"
        )
    front, first_line = split_frontmatter(text, path)
    ctx = _Ctx(path, first_line, front)
    try:
        root = yaml.compose(front, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = _file_line(front, first_line, mark) if mark is not None else first_line
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{path}:{line}: invalid YAML in frontmatter: {problem}") from None
    if root is None:
        root = yaml.MappingNode("tag:yaml.org,2002:map", [])
    items = _mapping_items(ctx, root, "frontmatter")
    rulesets: dict[str, RuleSet] = {}
    fallback: RuleSet | None = None
    disabled: dict[str, Rule] = {}
    tests: tuple[PolicyTest, ...] = ()
    permission_keys: tuple[tuple[str, bool], ...] = ()
    agent_name = name or Path(path).stem
    for k, v in items:
        key = k.value
        if key == "permission":
            rulesets, fallback, permission_keys = _permissions(ctx, v)
        elif key == "tools":
            disabled = _tools(ctx, v)
        elif key == "gatekeeper":
            tests = _tests(ctx, v)
        elif key == "name":
            value = _scalar(ctx, v, "name") if isinstance(v, yaml.ScalarNode) else None
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", value):
                raise ctx.error(v, "name", "must be a plain name (letters, digits, . _ -)")
            agent_name = value
        elif key not in KNOWN_TOP_LEVEL:
            ctx.warnings.append(
                f"{ctx.where(k)}: {key}: unknown frontmatter key{_suggest(key, KNOWN_TOP_LEVEL)}; "
                "gatekeeper ignores it"
            )
    return Policy(
        name=agent_name,
        path=path,
        rulesets=rulesets,
        fallback=fallback,
        disabled=disabled,
        tests=tests,
        warnings=tuple(ctx.warnings),
        permission_keys=permission_keys,
    )


# --------------------------------------------------------------------------------------------
# I/O


MAX_POLICY_BYTES = 1 << 20


def load_policy_file(path: str | Path, name: str | None = None) -> Policy:
    """Read and parse one agent file.

    Only a regular file is read: a FIFO or a device named ``*.md`` would block the reader (the
    daemon) or never end, so it is refused without being opened for reading.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError(f"{p}: not a regular file: an agent file must be a plain file")
        if st.st_size > MAX_POLICY_BYTES:
            raise PolicyError(f"{p}: larger than 1 MiB: not an agent file")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_POLICY_BYTES:
                raise PolicyError(f"{p}: larger than 1 MiB: not an agent file")
        data = b"".join(chunks)
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PolicyError(
            f"{p}:{line}: not valid UTF-8 (byte {exc.start}): save the file as UTF-8"
        ) from None
    return parse_policy(text, str(p), name)


def load_policy_dir(directory: str | Path) -> dict[str, Policy]:
    """Load every ``*.md`` agent file in ``directory``; any broken file fails the whole load."""
    d = Path(directory)
    if not d.is_dir():
        raise PolicyError(f"{d}: not a directory of agent files")
    try:
        names = sorted(e.name for e in os.scandir(d) if e.name.endswith(".md"))
    except OSError as exc:
        raise PolicyError(f"{d}: cannot list the agent files: {exc.strerror}") from None
    policies: dict[str, Policy] = {}
    for name in names:
        f = d / name
        pol = load_policy_file(f)
        if pol.name in policies:
            raise PolicyError(
                f"{f}: agent name {pol.name!r} is also defined by {policies[pol.name].path}"
            )
        policies[pol.name] = pol
    if not policies:
        raise PolicyError(f"{d}: no agent files (*.md) found")
    return policies


def bundled_policy_dir() -> Path:
    """The directory of the agent files shipped with gatekeeper."""
    return Path(__file__).resolve().parent / "policies"
