"""opencode's policy sources, merged as opencode merges them (gatekeeper.sources)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.client import Client
from gatekeeper.engine import decide_command, decide_path
from gatekeeper.errors import PolicyError
from gatekeeper.policy import Rule
from gatekeeper.policystore import PolicyStore
from gatekeeper.sources import (
    OpencodeSources,
    PermMap,
    build_policy,
    flatten,
    load_agents,
    merge_deep,
    parse_jsonc,
    permission_from_json,
)
from tests.daemon_util import short_dir, wait_for_socket


def _perm(text: str, name: str = "opencode.json") -> PermMap:
    return permission_from_json(parse_jsonc(text, name), name, name)


def test_jsonc_comments_trailing_commas_and_lines() -> None:
    node = parse_jsonc('{\n  // c\n  "a": 1, /* x */\n  "b": {"c": [1, 2,],},\n}\n', "f")
    assert [(k, line) for k, line, _ in node.items()] == [("a", 3), ("b", 4)]
    b = node.get("b")
    assert b is not None
    assert b.get("c") is not None
    with pytest.raises(PolicyError, match=r"f:2: invalid JSONC"):
        parse_jsonc('{\n "a" 1}', "f")


def test_merge_deep_keeps_place_and_appends() -> None:
    glob = _perm('{"bash": {"git *": "allow", "rm *": "deny"}, "edit": "ask"}', "g.json")
    proj = _perm('{"bash": {"git *": "ask", "npm *": "allow"}, "*": "deny"}', "p.json")
    merged = merge_deep(glob, proj)
    rules = [(k, r.pattern, r.action, r.source) for k, r in flatten(merged)]
    assert rules == [
        ("bash", "git *", "ask", "p.json:1"),  # the project's value, in the global's place
        ("bash", "rm *", "deny", "g.json:1"),
        ("bash", "npm *", "allow", "p.json:1"),
        ("edit", "*", "ask", "g.json:1"),
        ("*", "*", "deny", "p.json:1"),
    ]


def test_a_map_replaces_an_action_and_back() -> None:
    merged = merge_deep(_perm('{"bash": "ask"}'), _perm('{"bash": {"ls": "allow"}}'))
    assert [r.pattern for _, r in flatten(merged)] == ["ls"]


def test_star_key_interleaves_as_find_last() -> None:
    """opencode's evaluate is findLast over one list: a later "*" key beats earlier bash."""
    later_star = [
        ("bash", Rule("git *", "allow", "a:1", "x")),
        ("*", Rule("*", "deny", "a:2", "x")),
    ]
    p = build_policy("a", "a", later_star)
    assert decide_command(p, "git status", "/p", "/h").decision == "deny"
    earlier_star = list(reversed(later_star))
    p = build_policy("a", "a", earlier_star)
    assert decide_command(p, "git status", "/p", "/h").decision == "allow"
    assert decide_command(p, "ls", "/p", "/h").decision == "deny"  # the "*" rule
    assert decide_path(p, "edit", "x", "/p", "/h").decision == "deny"  # fallback


def test_home_in_patterns_is_expanded() -> None:
    rules = flatten(_perm('{"external_directory": {"~/src/*": "allow"}}'), "/home/u")
    assert rules[0][1].pattern == "/home/u/src/*"


@pytest.fixture
def layout(tmp_path: Path) -> OpencodeSources:
    home = tmp_path / "home"
    cfg = home / ".config" / "opencode"
    (cfg / "agent").mkdir(parents=True)
    (cfg / "opencode.json").write_text(
        '{"permission": {"bash": {"*": "ask", "rm *": "deny"}}}\n', encoding="utf-8"
    )
    (cfg / "agent" / "helper.md").write_text(
        "---\npermission:\n  bash:\n    'ls *': allow\n---\n", encoding="utf-8"
    )
    proj = tmp_path / "repo" / "sub"
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (proj / ".opencode" / "agents").mkdir(parents=True)
    (tmp_path / "repo" / "opencode.json").write_text(
        '{"permission": {"bash": {"git *": "allow"}}}\n', encoding="utf-8"
    )
    (proj / "opencode.jsonc").write_text(
        '{\n  // the project\n  "permission": {"bash": {"rm *": "ask",},},\n'
        '  "agent": {"dev": {"permission": {"bash": {"curl *": "deny"}}},\n'
        '            "old": {"disable": true}},\n}\n',
        encoding="utf-8",
    )
    (proj / ".opencode" / "agents" / "dev.md").write_text(
        "---\npermission:\n  bash:\n    'curl *': allow\n    'npm *': allow\n"
        "gatekeeper:\n  tests:\n    - {command: 'npm test', expect: allow}\n---\n",
        encoding="utf-8",
    )
    (proj / ".opencode" / "agents" / "nested").mkdir()
    (proj / ".opencode" / "agents" / "nested" / "x.md").write_text(
        "---\npermission: deny\n---\n", encoding="utf-8"
    )
    return OpencodeSources(proj, cfg, home)


def test_loader_order_and_sources(layout: OpencodeSources) -> None:
    loaded = load_agents(layout)
    assert sorted(loaded.agents) == ["dev", "helper", "nested/x"]  # "old" is disabled
    dev = loaded.agents["dev"]
    home = str(layout.home)
    rules = [(k, r.pattern, r.action, r.source) for k, r in dev.rules(home)]
    # global, then the work tree's root, then the project directory (rm * keeps its place),
    # then the agent: opencode.jsonc's agent key, then its agent file over it
    repo_json = str(layout.project.parent / "opencode.json")  # type: ignore[union-attr]
    assert rules == [
        ("bash", "*", "ask", "~/.config/opencode/opencode.json:1"),
        ("bash", "rm *", "ask", "opencode.jsonc:3"),
        ("bash", "git *", "allow", f"{repo_json}:1"),
        ("bash", "curl *", "allow", ".opencode/agents/dev.md:4"),
        ("bash", "npm *", "allow", ".opencode/agents/dev.md:5"),
    ]
    assert dev.files == ["opencode.jsonc", ".opencode/agents/dev.md"]
    policy = dev.policy(home)
    assert decide_command(policy, "rm -rf x", "/p", home).decision == "ask"
    assert decide_command(policy, "curl x", "/p", home).decision == "allow"
    assert len(policy.tests) == 1


def test_store_serves_opencode_agents(layout: OpencodeSources, tmp_path: Path) -> None:
    gk = tmp_path / "gk"
    gk.mkdir()
    (gk / "default.md").write_text("---\npermission: ask\n---\n", encoding="utf-8")
    store = PolicyStore(gk, "default", opencode=layout)
    store.load()
    assert sorted(store.policies) == ["default", "dev", "helper", "nested/x"]
    assert not store.changed()
    md = layout.project / ".opencode" / "agents" / "dev.md"  # type: ignore[operator]
    md.write_text("---\npermission:\n  bash: deny\n---\n", encoding="utf-8")
    assert store.changed()
    assert store.reload() is None
    d = decide_command(store.policies["dev"], "npm test", "/p", "/h")
    assert d.decision == "deny"


def test_store_refuses_a_name_in_both(layout: OpencodeSources, tmp_path: Path) -> None:
    gk = tmp_path / "gk"
    gk.mkdir()
    (gk / "dev.md").write_text("---\npermission: ask\n---\n", encoding="utf-8")
    store = PolicyStore(gk, None, opencode=layout)
    with pytest.raises(PolicyError, match="defined both"):
        store.load()


def test_the_daemon_serves_opencode_agents_from_its_config(
    layout: OpencodeSources, tmp_path: Path
) -> None:
    """`opencode_project` in [serve]: a real daemon decides with the merged rules."""
    gk = tmp_path / "gk"
    gk.mkdir()
    (gk / "default.md").write_text("---\npermission: ask\n---\n", encoding="utf-8")
    sock = short_dir() / "s.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'[serve]\nopencode_project = "{layout.project}"\n', encoding="utf-8")
    env = {**os.environ, "HOME": str(layout.home), "XDG_CONFIG_HOME": str(layout.home / ".config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper", "serve", "--socket", str(sock), "--policy-dir",
         str(gk), "--default-agent", "default", "--no-audit", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_socket(sock, proc)
        with Client(sock) as c:
            d = c.check("curl x && git log", cwd=str(layout.project), agent="dev")
            assert d["decision"] == "allow"
            assert {p["rule"]["source"] for p in d["parts"]} == {
                ".opencode/agents/dev.md:4",
                f"{layout.project.parent / 'opencode.json'}:1",  # type: ignore[union-attr]
            }
            assert c.check("rm -rf x", cwd="/tmp", agent="dev")["decision"] == "ask"
    finally:
        proc.terminate()
        proc.wait(15)
        assert proc.stdout is not None
        proc.stdout.close()
