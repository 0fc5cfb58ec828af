"""Write a human's "always allow" decision into an agent file, in place.

:func:`add_allow_rule` is pure (text in, text out). It never round-trips the YAML through a
dumper: it finds positions with ``yaml.compose`` (node start/end marks) and only *inserts*
lines — or, when a permission is a single action (``bash: ask``, ``permission: ask``), replaces
that one line by the equivalent map plus the new rule. Every other byte of the file (comments,
blank lines, key order, quoting, line ends, a BOM, the markdown body) stays as it was.

Where the rule goes is the security-critical part. The last matching rule wins, so the new
``"PATTERN": allow`` line goes into ``permission.<permission>`` just before the first ``deny``
rule of that map (every deny rule still comes after it and still wins), or at the end of the map
when it has none. Comment and blank lines directly above that deny rule stay with it: the new
line goes right after the rule that precedes them.

Anything that cannot be edited exactly — flow-style maps, anchors and aliases, a value that is
not on its key's line, a permission that only follows rules written elsewhere — is a
:class:`PolicyError` that names the line and says what to add by hand. Every edit is checked by
parsing the result with :func:`gatekeeper.policy.parse_policy` before it is returned.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from gatekeeper.errors import PolicyError
from gatekeeper.patterns import pattern_regex
from gatekeeper.policy import Action, Policy, Rule, parse_policy, split_frontmatter

__all__ = ["add_allow_rule"]

_PERMISSION_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Characters a rule cannot hold: controls (newline, tab, ESC...), format characters (bidi
# overrides, zero-width), surrogates, line/paragraph separators, and YAML's non-characters.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NON_CHARACTERS = frozenset({"\ufffe", "\uffff"})
# YAML breaks lines at these too; an editor (and split_frontmatter) does not.
_OTHER_LINE_BREAKS = re.compile("\r(?!\n|\\Z)|[\x85\u2028\u2029]")
_DEFAULT_STEP = 2

Pairs = tuple[tuple[str, Action], ...]


@dataclass(frozen=True, slots=True)
class _Edit:
    """Replace ``remove`` lines at ``start`` (an index into the file's lines) with ``new``."""

    start: int
    remove: int
    new: tuple[str, ...]
    rule_offset: int  # which line of ``new`` is the rule
    index: int  # the new rule's position in its rule set

    @property
    def rule_line(self) -> int:
        """1-based file line of the new rule."""
        return self.start + self.rule_offset + 1

    def old_line(self, new_line: int) -> int:
        """The line of the original file that line ``new_line`` of the edited file was."""
        if new_line <= self.start:
            return new_line
        return new_line - len(self.new) + self.remove


def _quote(pattern: str) -> str:
    """A YAML double-quoted string for ``pattern`` (which has no control characters)."""
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule_text(indent: int, pattern: str) -> str:
    return f"{' ' * indent}{_quote(pattern)}: allow"


def _line_of_source(rule: Rule) -> int:
    return int(rule.source.rsplit(":", 1)[1])


def _pairs(rules: tuple[Rule, ...]) -> Pairs:
    return tuple((r.pattern, r.action) for r in rules)


class _Front:
    """One agent file split into lines, with its frontmatter composed into YAML nodes.

    ``lines`` is the file (without a BOM) split at ``\\n``; line ends stay on the lines as a
    trailing ``\\r`` in CRLF files, so ``"\\n".join(lines)`` gives the file back unchanged.
    ``lines[0]`` is the opening ``---``; frontmatter character offsets map to indexes into
    ``lines`` by counting newlines, as parse_policy does for its line numbers.
    """

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.bom = "\ufeff" if text.startswith("\ufeff") else ""
        self.lines = text[len(self.bom) :].split("\n")
        self.crlf = self.lines[0].endswith("\r")
        self.front, _ = split_frontmatter(text, path)
        self.close = next(
            i
            for i in range(1, len(self.lines))
            if self.lines[i].rstrip("\r").rstrip() in ("---", "...")
        )
        if "\n".join(self.lines[1 : self.close]) != self.front:  # pragma: no cover - guard
            raise self.by_hand(1, "the frontmatter could not be located exactly")
        odd = _OTHER_LINE_BREAKS.search(self.front)
        if odd is not None:
            raise self.by_hand(
                self.line(odd.start()) + 1,
                f"the frontmatter holds a line break YAML sees but editors do not "
                f"({odd.group()!r})",
            )
        for event in yaml.parse(self.front, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                mark = event.start_mark
                raise self.by_hand(
                    self.line(mark.index) + 1 if mark is not None else 1,
                    "the frontmatter uses YAML anchors or aliases (&name, *name)",
                )
        self.root: yaml.Node | None = yaml.compose(self.front, Loader=yaml.SafeLoader)

    # --- positions ------------------------------------------------------------------------

    def line(self, index: int) -> int:
        """Index into ``lines`` of a frontmatter character offset."""
        return self.front.count("\n", 0, index) + 1

    def column(self, index: int) -> int:
        return index - (self.front.rfind("\n", 0, index) + 1)

    def text(self, i: int) -> str:
        """Line ``i`` without its line end."""
        return self.lines[i].removesuffix("\r")

    def is_filler(self, i: int) -> bool:
        """A blank or comment-only line."""
        stripped = self.text(i).strip()
        return not stripped or stripped.startswith("#")

    def last_line(self, node: yaml.Node) -> int:
        """Index of the last line that holds part of ``node``.

        A block collection's end mark sits at the next token (after any comments), so the last
        line of a block map or list is that of its last item.
        """
        if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
            return self.last_line(node.value[-1][1])
        if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
            return self.last_line(node.value[-1])
        start, end = node.start_mark.index, node.end_mark.index
        return self.line(max(start, end - 1))

    def key_column(self, key: yaml.Node) -> int:
        """The column of a block-map key that starts its line; otherwise it is not editable."""
        i = self.line(key.start_mark.index)
        col = self.column(key.start_mark.index)
        if self.text(i)[:col].strip():
            raise self.by_hand(i + 1, "a key does not start its line (complex '? key' syntax)")
        return col

    # --- output ---------------------------------------------------------------------------

    def render(self, edit: _Edit) -> str:
        end = "\r" if self.crlf else ""
        new = [line + end for line in edit.new]
        lines = self.lines[: edit.start] + new + self.lines[edit.start + edit.remove :]
        return self.bom + "\n".join(lines)

    def by_hand(self, line: int, problem: str) -> PolicyError:
        return PolicyError(
            f"{self.path}:{line}: cannot add the rule automatically: {problem}; "
            "add the allow rule to the file by hand"
        )


def _block_map(front: _Front, node: yaml.Node, what: str) -> yaml.MappingNode:
    line = front.line(node.start_mark.index) + 1
    if not isinstance(node, yaml.MappingNode):
        raise front.by_hand(line, f"{what} is not a map")
    if node.flow_style:
        raise front.by_hand(line, f"{what} is a flow-style map ({{...}}) gatekeeper does not edit")
    return node


def _find(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _step(front: _Front, node: yaml.Node | None) -> int:
    """How far the file indents a nested map (the first one found, breadth first)."""
    queue = [node]
    while queue:
        current = queue.pop(0)
        if isinstance(current, yaml.MappingNode) and not current.flow_style:
            for k, v in current.value:
                if isinstance(v, yaml.MappingNode) and not v.flow_style and v.value:
                    step = front.column(v.value[0][0].start_mark.index) - front.column(
                        k.start_mark.index
                    )
                    if step > 0:
                        return step
                queue.append(v)
    return _DEFAULT_STEP


def _split_scalar_line(front: _Front, key: yaml.Node, value: yaml.Node) -> tuple[str, str, str]:
    """For ``key: value  # comment`` on one line: (text through the colon, value, comment)."""
    i = front.line(key.start_mark.index)
    if not isinstance(value, yaml.ScalarNode) or value.style not in (None, '"', "'"):
        raise front.by_hand(i + 1, "the value is not a plain or quoted action")
    if front.line(value.start_mark.index) != i or front.line(value.end_mark.index) != i:
        raise front.by_hand(i + 1, "the action is not on the same line as its key")
    line = front.text(i)
    front.key_column(key)
    value_start = front.column(value.start_mark.index)
    value_end = front.column(value.end_mark.index)
    head = line[:value_start].rstrip()
    rest = line[value_end:].strip()
    if not head.endswith(":") or (rest and not rest.startswith("#")):
        raise front.by_hand(i + 1, "the line is not a simple 'key: action'")
    return head, line[value_start:value_end], rest


def _catch_all(front: _Front, permission: str, rules: tuple[Rule, ...], what: str) -> None:
    """Refuse to turn a lone ``"*"`` rule (an action for everything) into a map when it
    already allows everything or denies everything (a deny rule always wins)."""
    if len(rules) != 1 or rules[0].pattern != "*":
        return
    rule = rules[0]
    line = _line_of_source(rule)
    if rule.action == "allow":
        raise PolicyError(
            f"{front.path}:{line}: already allowed: {what} allows every {permission} request; "
            "nothing to add"
        )
    if rule.action == "deny":
        raise PolicyError(
            f"{front.path}:{line}: {what} denies every {permission} request and a deny rule "
            "always wins, so an allow rule would never count; if you really mean to allow "
            f"this, change line {line} by hand"
        )


def _check_inherited(front: _Front, old: Policy, permission: str) -> None:
    """``permission`` has no rules of its own: may a new map of its own replace what it follows?

    Its new map replaces the rules it follows today (``permission: ask``, the ``"*"`` key of
    the permission map, or, for writes, the edit rules). That is only safe when those rules
    say nothing but ask (a subject no rule matches asks too).
    """
    inherited = old.ruleset(permission)
    if inherited is None:
        return
    origin = inherited.rules[0].origin if inherited.rules else "permission"
    _catch_all(front, permission, inherited.rules, origin)
    for rule in inherited.rules:
        if rule.action != "ask":
            line = _line_of_source(rule)
            raise PolicyError(
                f"{front.path}:{line}: {permission} has no rules of its own and follows the "
                f"rules of {origin} ({rule.pattern!r}: {rule.action} at line {line}); a new "
                f"'{permission}:' map would replace them for {permission}. Add the allow rule "
                f"by hand: a '{permission}:' map that copies those rules, with the new rule "
                "before the first deny rule"
            )


def _insert_into_map(
    front: _Front,
    old: Policy,
    permission: str,
    pattern: str,
    key: yaml.Node,
    value: yaml.MappingNode,
) -> _Edit:
    """``permission.<permission>`` is a block map: the rule goes before its first deny rule."""
    rules = old.rulesets[permission].rules
    for rule in rules:
        if rule.pattern == pattern:
            line = _line_of_source(rule)
            if rule.action == "allow":
                raise PolicyError(f"{front.path}:{line}: {pattern!r} is already allowed")
            raise PolicyError(
                f"{front.path}:{line}: {permission} already has a rule for {pattern!r} "
                f"({rule.action}); change its action by hand if you mean to"
            )
    entries = value.value
    indent = front.key_column(entries[0][0])
    first_deny = next((i for i, r in enumerate(rules) if r.action == "deny"), None)
    if first_deny is None:
        index = len(rules)
        start = front.last_line(entries[-1][1]) + 1
    else:
        index = first_deny
        deny_line = front.line(entries[first_deny][0].start_mark.index)
        if front.key_column(entries[first_deny][0]) != indent:  # pragma: no cover - YAML rule
            raise front.by_hand(deny_line + 1, "the map's keys are not aligned")
        floor = (
            front.last_line(entries[first_deny - 1][1]) + 1
            if first_deny > 0
            else front.line(key.start_mark.index) + 1
        )
        start = deny_line
        while start > floor and front.is_filler(start - 1):
            start -= 1
    return _Edit(start, 0, (_rule_text(indent, pattern),), 0, index)


def _plan(front: _Front, old: Policy, permission: str, pattern: str) -> _Edit:
    """Decide where the new rule goes and which lines to write."""
    disabled = old.disabled.get(permission)
    if disabled is not None:
        line = _line_of_source(disabled)
        raise PolicyError(
            f"{front.path}:{line}: {disabled.origin}: false turns {permission} off, so an allow "
            f"rule would not count; change line {line} by hand if you mean to allow it"
        )
    root = None if front.root is None else _block_map(front, front.root, "the frontmatter")
    step = _step(front, root)
    found = None if root is None else _find(root, "permission")

    if found is None:
        # No permission key at all: a new block at the end of the frontmatter.
        _check_inherited(front, old, permission)
        col = front.key_column(root.value[0][0]) if root is not None and root.value else 0
        lines: tuple[str, ...] = (
            f"{' ' * col}permission:",
            f"{' ' * (col + step)}{permission}:",
            _rule_text(col + 2 * step, pattern),
        )
        return _Edit(front.close, 0, lines, 2, 0)

    perm_key, perm_value = found
    col = front.key_column(perm_key)
    if isinstance(perm_value, yaml.ScalarNode):
        # permission: ask  →  "*": ask, then <permission>: with the rule.
        _check_inherited(front, old, permission)
        head, action, comment = _split_scalar_line(front, perm_key, perm_value)
        ind = " " * (col + step)
        star = f'{ind}"*": {action}' + (f"  {comment}" if comment else "")
        lines = (head, star, f"{ind}{permission}:", _rule_text(col + 2 * step, pattern))
        return _Edit(front.line(perm_key.start_mark.index), 1, lines, 3, 0)

    perm_map = _block_map(front, perm_value, "permission")
    entry = _find(perm_map, permission)
    if entry is None:
        # A permission map without this key: a new key at the end of the map.
        _check_inherited(front, old, permission)
        sibling = front.key_column(perm_map.value[0][0])
        inner = sibling + (sibling - col if sibling > col else step)
        lines = (f"{' ' * sibling}{permission}:", _rule_text(inner, pattern))
        return _Edit(front.last_line(perm_map.value[-1][1]) + 1, 0, lines, 1, 0)

    key, value = entry
    if isinstance(value, yaml.ScalarNode):
        # <permission>: ask  →  a map: "*": ask, then the rule.
        rules = old.rulesets[permission].rules
        _catch_all(front, permission, rules, f"permission.{permission}")
        if pattern == "*":
            raise PolicyError(
                f"{front.path}:{front.line(key.start_mark.index) + 1}: {permission} already has "
                "a rule for '*'; change its action by hand if you mean to"
            )
        head, action, comment = _split_scalar_line(front, key, value)
        kcol = front.key_column(key)
        inner = kcol + (kcol - col if kcol > col else step)
        star = f'{" " * inner}"*": {action}' + (f"  {comment}" if comment else "")
        lines = (head, star, _rule_text(inner, pattern))
        return _Edit(front.line(key.start_mark.index), 1, lines, 2, 1)

    value = _block_map(front, value, f"permission.{permission}")
    return _insert_into_map(front, old, permission, pattern, key, value)


def _verify(
    old: Policy,
    new_text: str,
    path: str,
    permission: str,
    pattern: str,
    subject: str | None,
    edit: _Edit,
) -> None:
    """Check by parsing that the edit added exactly the one rule, where it was meant to go."""
    hand = f"add '{_quote(pattern)}: allow' to permission.{permission} by hand"
    try:
        new = parse_policy(new_text, path)
    except PolicyError as exc:
        raise PolicyError(
            f"{path}: cannot add the rule automatically (the edited file would not load: "
            f"{exc}); {hand}"
        ) from None
    old_own = old.rulesets.get(permission)
    expected = list(_pairs(old_own.rules) if old_own else ())
    expected.insert(edit.index, (pattern, "allow"))
    new_own = new.rulesets.get(permission)
    ok = new_own is not None and list(_pairs(new_own.rules)) == expected
    if ok and new_own is not None:
        ok = new_own.rules[edit.index].source == f"{Path(path).name}:{edit.rule_line}"
    others_old = {p: _pairs(rs.rules) for p, rs in old.rulesets.items() if p != permission}
    others_new = {p: _pairs(rs.rules) for p, rs in new.rulesets.items() if p != permission}
    ok = (
        ok
        and others_old == others_new
        and _pairs(old.fallback.rules if old.fallback else ())
        == _pairs(new.fallback.rules if new.fallback else ())
        and set(old.disabled) == set(new.disabled)
        and [(t.permission, t.subject, t.expect, t.cwd) for t in old.tests]
        == [(t.permission, t.subject, t.expect, t.cwd) for t in new.tests]
        and old.name == new.name
    )
    if not ok:
        raise PolicyError(
            f"{path}:{edit.start + 1}: cannot add the rule automatically (the edit did not "
            f"read back as exactly one new rule); {hand}"
        )
    if subject is None:
        return
    action, rule = new.lookup(permission, subject)
    if action == "allow":
        return
    if rule is None or not pattern_regex(pattern).fullmatch(subject):
        raise PolicyError(
            f"{path}: the pattern {pattern!r} does not match {subject!r}: no rule was added"
        )
    line = edit.old_line(_line_of_source(rule))
    if action == "deny":
        raise PolicyError(
            f"{path}:{line}: {subject!r} is still denied by {rule.pattern!r}: deny at line "
            f"{line}; a deny rule always wins, so gatekeeper does not add an allow rule that "
            f"would never count. Change line {line} by hand if you really mean to allow it"
        )
    raise PolicyError(
        f"{path}:{line}: the rule {rule.pattern!r}: {action} at line {line} comes after the "
        f"first deny rule and would still decide {subject!r}; add the rule by hand after "
        f"line {line}"
    )


def _check_request(path: str, permission: str, pattern: str) -> None:
    if not _PERMISSION_NAME.fullmatch(permission):
        raise PolicyError(
            f"{path}: {permission!r} is not a permission name (lower-case letters, digits, _)"
        )
    if not pattern:
        raise PolicyError(f"{path}: the pattern is empty: nothing to allow")
    for ch in pattern:
        if unicodedata.category(ch) in _BAD_CATEGORIES or ch in _NON_CHARACTERS:
            raise PolicyError(
                f"{path}: the pattern {pattern!r} contains a control or invisible character "
                f"(U+{ord(ch):04X}); gatekeeper only writes single-line, printable patterns"
            )


def add_allow_rule(
    text: str, path: str, permission: str, pattern: str, subject: str | None = None
) -> tuple[str, int]:
    """Return (new file text, 1-based line number of the inserted rule).

    ``text`` is an agent file, ``path`` its name for messages and rule sources; the new rule is
    ``"PATTERN": allow`` in ``permission.<permission>``, placed before the first deny rule of
    that map. With ``subject`` (the command or path the human approved), the edited policy must
    allow it. Raises :class:`PolicyError` (file, line, what to do by hand) when the file cannot
    be edited safely; the text is then not changed.
    """
    _check_request(path, permission, pattern)
    old = parse_policy(text, path)  # a file that does not load is not edited
    front = _Front(text, path)
    edit = _plan(front, old, permission, pattern)
    new_text = front.render(edit)
    _verify(old, new_text, path, permission, pattern, subject, edit)
    return new_text, edit.rule_line
