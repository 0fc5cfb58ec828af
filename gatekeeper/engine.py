"""Decisions: a policy plus the parts of a command (or a file path) → allow / ask / deny.

Pure: no I/O. The strictest part wins (deny > ask > allow); every decision carries each part's
subject, its decision and the rule that matched it, so it can always explain itself.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from gatekeeper.errors import BadInput
from gatekeeper.patterns import literal_prefix, pattern_regex
from gatekeeper.policy import STRICTNESS, Action, Policy, Rule, RuleSet
from gatekeeper.shell import Analysis, Part, analyse, check_input
from gatekeeper.shell.places import external_as_opencode, normpath

_CACHEABLE = 4096  # commands up to this length keep their analysis in an LRU cache


class PartDecision(NamedTuple):
    """The decision for one part of a request (a NamedTuple: built on every decision, cheaply)."""

    permission: str
    subject: str
    decision: Action
    rule: Rule | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subject": self.subject,
            "permission": self.permission,
            "decision": self.decision,
            "rule": self.rule.to_json() if self.rule is not None else None,
        }
        if self.note:
            out["note"] = self.note
        return out

    def explain(self) -> str:
        if self.rule is not None:
            origin = ""
            if self.rule.origin.startswith("tools."):
                origin = f", {self.rule.origin}: false"
            elif self.rule.origin.startswith("always."):
                origin = ", approved always by a human"
            why = f'rule "{self.rule.pattern}" → {self.rule.action} ({self.rule.source}{origin})'
        else:
            why = f"no {self.permission} rule matches (ask)"
        if self.note:
            why += f"; {self.note}"
        return why


class Decision(NamedTuple):
    """The decision for a whole request; its ``reason`` is composed when it is read."""

    decision: Action
    parts: tuple[PartDecision, ...]
    agent: str = ""

    @property
    def reason(self) -> str:
        return _reason(self.decision, self.parts)

    @property
    def first_ask(self) -> PartDecision | None:
        """The first part that asks: what a human is asked about, and what "always" covers."""
        return next((p for p in self.parts if p.decision == "ask"), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "parts": [p.to_json() for p in self.parts],
        }


# Something that turns (command, cwd, home, root) into an Analysis, raising BadInput on bad
# input.
Analyser = Callable[[str | bytes, str, str | None, str | None], Analysis]
# Something that confirms an analysis with independent readers: the parts to add (none when
# they agree). See gatekeeper.readers.
Confirmer = Callable[[Analysis], tuple[Part, ...]]

# Rules a human added with "always" for the daemon's lifetime: permission → allow rules.
Session = Mapping[str, RuleSet]


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str]:
    return pattern_regex(pattern)


def decide_part(policy: Policy, part: Part, session: Session | None = None) -> PartDecision:
    """Decide one part: its rule, its normalised spellings (only ever stricter), its floor.

    Session rules (a human's "always") turn an ``ask`` into ``allow``; they never override a
    ``deny`` or a floor (what gatekeeper cannot read is asked about every time).
    """
    if part.permission == "directory":  # a line that only changes directory inside the root
        return PartDecision("directory", part.subject, "allow", None, part.note)
    action, rule = policy.lookup(part.permission, part.subject)
    for variant in part.variants:
        v_action, v_rule = policy.lookup(part.permission, variant)
        # A normalised spelling counts only when it is stricter *and* matched a rule that
        # comes later than the one the subject matched: the catch-all "*": ask must not
        # override "src/*": allow just because /abs/src/x also matches "*".
        if (
            STRICTNESS[v_action] > STRICTNESS[action]
            and v_rule is not None
            and (rule is None or v_rule.origin != rule.origin or v_rule.index > rule.index)
        ):
            action, rule = v_action, v_rule
    for text in part.written:
        # opencode's subject (assignments and redirections included): its rule counts when
        # it is stricter and names what only that spelling has ("echo * > out/*"), not when
        # it is a rule the subject itself matches too (a catch-all "*": ask).
        w_action, w_rule = policy.lookup(part.permission, text)
        if (
            STRICTNESS[w_action] > STRICTNESS[action]
            and w_rule is not None
            and not _pattern(w_rule.pattern).fullmatch(part.subject)
        ):
            action, rule = w_action, w_rule
    if action == "ask" and session is not None:
        rs = session.get(part.permission)
        s_rule = rs.lookup(part.subject) if rs is not None else None
        if s_rule is not None:
            action, rule = s_rule.action, s_rule
    note = part.note
    if action == "allow" and rule is not None and part.permission == "bash":
        why = path_outside_rule(part.subject, rule.pattern)
        if why is not None:
            action, note = "ask", "; ".join(n for n in (note, why) if n)
    if STRICTNESS[part.floor] > STRICTNESS[action]:
        action = part.floor
    return PartDecision(part.permission, part.subject, action, rule, note)


def path_outside_rule(subject: str, pattern: str) -> str | None:
    """Why an allow rule does not cover a command word that is a path, or None.

    ``npm*`` was written for the program npm; it also matches ``npm/../../bin/rm``, which bash
    runs as a file path. A rule covers a path command word only when its literal text spells
    the whole word (``./gradlew *``), or names a directory the word stays inside without
    ``..`` (``./scripts/*``), or starts with a wildcard (``*``: any program at all).
    """
    word = subject.split(" ", 1)[0]
    if "/" not in word:
        return None
    prefix = literal_prefix(pattern)
    if not prefix or word == prefix[: len(word)]:
        return None
    if "/" in prefix and word.startswith(prefix) and ".." not in word.split("/"):
        return None
    return f'the command word is a path; rule "{pattern}" does not name it'


def combine(parts: tuple[PartDecision, ...], agent: str = "") -> Decision:
    """The strictest part decides."""
    if not parts:
        return Decision("ask", parts, agent)
    rank = 0
    for p in parts:
        r = STRICTNESS[p.decision]
        rank = max(rank, r)
    return Decision(_BY_RANK[rank], parts, agent)


_BY_RANK: tuple[Action, ...] = ("allow", "ask", "deny")


def _reason(final: Action, parts: tuple[PartDecision, ...]) -> str:
    """One line naming the parts that made the decision what it is."""
    if not parts:
        return "ask: nothing to decide"
    deciding = [p for p in parts if p.decision == final]
    shown = "; ".join(f"`{_short(p.subject)}`: {p.explain()}" for p in deciding[:3])
    more = f" (and {len(deciding) - 3} more)" if len(deciding) > 3 else ""
    return f"{final}: {shown}{more}"


def _short(text: str, limit: int = 120) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=8192)
def _cached_analysis(command: str, cwd: str, home: str | None, root: str | None) -> Analysis:
    # analyse() validates its input; a command that raised is never cached.
    return analyse(command, cwd, home, root)


def analyse_command(
    command: str | bytes, cwd: str, home: str | None = None, root: str | None = None
) -> Analysis:
    """:func:`gatekeeper.shell.analyse`, remembered for short commands (it is pure)."""
    if isinstance(command, str) and len(command) <= _CACHEABLE:
        return _cached_analysis(command, cwd, home, root)
    text = check_input(command)
    if len(text) <= _CACHEABLE:
        return _cached_analysis(text, cwd, home, root)
    return analyse(text, cwd, home, root)


def decide_command(
    policy: Policy,
    command: str | bytes,
    cwd: str,
    home: str | None = None,
    *,
    session: Session | None = None,
    env: Mapping[str, str] | None = None,
    analyser: Analyser | None = None,
    confirm: Confirmer | None = None,
    root: str | None = None,
) -> Decision:
    """Decide a shell command line run in ``cwd`` under ``policy``; ``root`` is the project
    root (``cwd`` when not given, see :func:`gatekeeper.shell.analyse`).

    ``env``, when given, is the environment the command will run with: variables that change
    how bash itself runs make the decision ask (see :func:`env_parts`). ``analyser`` replaces
    the in-process :func:`analyse_command` (the daemon analyses in a separate process, so that
    a crash of the C parser cannot take it down). ``confirm`` checks a would-be allow with the
    independent readers (:mod:`gatekeeper.readers`); what they add can only make it stricter.
    """
    analysis = (analyser or analyse_command)(command, cwd, home, root)
    decision = decide_analysis(policy, analysis, session=session, env=env)
    if decision.decision == "allow" and confirm is not None:
        extra = confirm(analysis)
        if extra:
            decision = decide_analysis(policy, analysis, session=session, env=env, extra=extra)
    return decision


def decide_analysis(
    policy: Policy,
    analysis: Analysis,
    *,
    session: Session | None = None,
    env: Mapping[str, str] | None = None,
    extra: tuple[Part, ...] = (),
) -> Decision:
    """Decide the parts of an analysed command line (plus ``extra`` parts, e.g. the readers')."""
    parts = analysis.parts + (env_parts(env, analysis.command) if env is not None else ()) + extra
    lookup = policy.lookup
    decided: list[PartDecision] = []
    for p in parts:
        if (
            p.variants
            or p.written
            or p.permission == "directory"
            or session is not None
            or p.floor != "allow"
            or (p.permission == "bash" and "/" in p.subject.partition(" ")[0])
        ):
            decided.append(decide_part(policy, p, session))
        else:  # the common case, inlined: one rule lookup, nothing to raise it
            action, rule = lookup(p.permission, p.subject)
            decided.append(PartDecision(p.permission, p.subject, action, rule, p.note))
    return combine(tuple(decided), policy.name)


# Variables that change what bash runs before or instead of the command it was given.
_SHELL_ENV = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "GLOBIGNORE",
        "IFS",
        "CDPATH",
        "EXECIGNORE",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "BASH_XTRACEFD",
        "BASH_LOADABLES_PATH",
    }
)
# Locales whose characters bash reads byte for byte as gatekeeper's readers do (UTF-8, C).
_READABLE_LOCALE = re.compile(r"^(C|POSIX|[A-Za-z_@.-]*\.(?i:utf-?8)(@[A-Za-z0-9_-]+)?)$")
_RELATIVE_PATH_ENTRY = re.compile(r"(^|:)(?!/)[^:]*(:|$)|(^|:)(:|$)")


def env_parts(env: Mapping[str, str], command: str = "") -> tuple[Part, ...]:
    """Parts that make a run ask because of its environment.

    Exported functions (``BASH_FUNC_x%%``) can replace any command; ``BASH_ENV`` and friends
    run code before the command; a ``PATH`` with an empty or relative entry finds commands in
    whatever directory the command runs in.
    """
    out: list[Part] = []
    for name in sorted(env):
        if name in _SHELL_ENV or name.startswith("BASH_FUNC_"):
            out.append(
                Part(
                    "bash",
                    f"env {name}",
                    "ask",
                    f"the environment sets {name}, which changes what bash runs",
                )
            )
    locale = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG")
    if locale and not command.isascii() and not _READABLE_LOCALE.match(locale):
        # In a multi-byte locale such as Big5 or GBK a character's second byte can be a
        # backslash or a backtick: bash would read a non-ASCII line as other words.
        out.append(
            Part(
                "bash",
                "env "
                + (
                    "LC_ALL" if env.get("LC_ALL") else "LC_CTYPE" if env.get("LC_CTYPE") else "LANG"
                ),
                "ask",
                f"the locale {locale!r} may make bash read the command's bytes differently",
            )
        )
    path = env.get("PATH")
    if path is not None and (path == "" or _RELATIVE_PATH_ENTRY.search(path)):
        out.append(
            Part(
                "bash",
                "env PATH",
                "ask",
                "PATH has an empty or relative entry: commands may come from the project",
            )
        )
    return tuple(out)


def path_parts(
    permission: str, path: str, cwd: str, home: str | None = None, root: str | None = None
) -> tuple[Part, ...]:
    """The parts of a file request: the path (relative to ``cwd``) under edit/write rules,
    relative to ``root`` (the project root, ``cwd`` when not given) inside it, absolute and
    with the external_directory check outside it."""
    if permission not in ("edit", "write"):
        raise BadInput(f"permission must be edit or write, not {permission!r}")
    path = check_input(path)
    if not path:
        raise BadInput("path is empty")
    if path.startswith("~") and home is not None and (path == "~" or path.startswith("~/")):
        path = home + path[1:]
    full = normpath(posixpath.join(cwd, path))
    root = normpath(root or cwd)
    inside = full == root or full.startswith(root.rstrip("/") + "/")
    if inside:
        return (Part(permission, posixpath.relpath(full, root), variants=(full,)),)
    return (
        Part(permission, full),
        Part("external_directory", full, written=(external_as_opencode(full),)),
    )


def decide_path(
    policy: Policy,
    permission: str,
    path: str | bytes,
    cwd: str,
    home: str | None = None,
    *,
    session: Session | None = None,
    root: str | None = None,
) -> Decision:
    """Decide an edit or write of ``path`` (relative to ``cwd``; ``root`` is the project
    root, ``cwd`` when not given)."""
    text = check_input(path)
    parts = path_parts(permission, text, cwd, home, root)
    return combine(tuple(decide_part(policy, p, session) for p in parts), policy.name)


def decide_other(policy: Policy, permission: str, subject: str) -> Decision:
    """Answer a permission gatekeeper does not enforce itself (webfetch, read, …)."""
    subject = check_input(subject)
    return combine((decide_part(policy, Part(permission, subject)),), policy.name)
