"""How much a decision costs, and whether that cost grows with the number of rules.

Run: ``python benchmarks/bench_engine.py [--quick] [--json]``

Measures, in one run, for (a) the example policy (``policies/backend-engineer.md``) and (b) a
generated 5,000-rule agent file written to a temporary directory:

* matcher level: ``Policy.lookup`` on subjects already split out of the command corpus (each
  part's subject and its normalised variants, as the engine looks them up);
* full decisions: ``engine.decide_command`` on a corpus of realistic command lines, *cold*
  (the engine's analysis cache cleared before each pass, so every line is parsed again) and
  *warm* (every analysis cached);
* the naive reference: every rule's precompiled regex (``patterns.pattern_regex``, compiled
  once up front) tried in file order, last match wins, done per part, on the same subjects and
  the same command lines.

and prints µs per operation, operations per second and the two ratios the design asks for:
the cost per decision at 5,000 rules over the cost at ~15 rules (target ≤ 1.2x) and the naive
loop over the engine at 5,000 rules (target ≥ 200x). Each figure is the median of several
passes timed with ``time.perf_counter_ns``, on one CPU when the OS lets us pin it, with the
garbage collector paused while timing. Nothing here asserts on time: the numbers are reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents import generated_agent

from gatekeeper import engine
from gatekeeper.engine import PartDecision, combine, decide_command
from gatekeeper.patterns import pattern_regex
from gatekeeper.policy import STRICTNESS, Action, Policy, Rule, RuleSet, load_policy_file
from gatekeeper.shell import Part

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "policies" / "backend-engineer.md"
CWD = "/home/dev/project"
HOME = "/home/dev"

# Command lines an agent really sends: simple ones, compound ones, wrappers, redirects,
# substitutions, and some that hit the generated policy's own rules.
CORPUS: tuple[str, ...] = (
    "git status",
    "git status --short",
    "git diff HEAD~1 -- src/",
    "git log --oneline -20",
    "git push --force origin main",
    "git add -A && git commit -m 'fix: handle empty input'",
    "npm test",
    "npm run build && npm run lint",
    "npm ci --no-audit 2>&1 | tail -n 40",
    "pip install -r requirements.txt",
    "python -m pytest -q tests/test_api.py -k 'login and not slow'",
    "go test ./... -run TestHandler -count=1",
    "go build -o bin/server ./cmd/server",
    "docker build -t api:dev . && docker run --rm -p 8080:8080 api:dev",
    "kubectl get pods -n staging -o wide",
    "terraform plan -out=tfplan",
    "psql -h localhost -U app -c 'select count(*) from users'",
    "ls -la",
    "cat README.md | head -n 50",
    "cd services/api && go vet ./... && cd ../web && npm run typecheck",
    "find . -name '*.py' -not -path './.venv/*' | xargs grep -n TODO",
    'echo "built at $(date +%s)" > build/stamp.txt',
    "rm -rf node_modules dist && npm install",
    'for f in src/*.ts; do npx prettier --check "$f"; done',
    "if [ -f .env ]; then source .env; fi; npm start",
    "sudo systemctl restart nginx",
    "bash -c 'git fetch origin && git rebase origin/main'",
    "timeout 30 curl -fsS http://localhost:8080/health || echo down",
    "CI=1 npm test -- --coverage > coverage.txt 2>&1",
    "make -j8 && ./bin/app --version",
    "tar -czf /tmp/backup.tgz src/ && ls -l /tmp/backup.tgz",
    "jq '.dependencies | keys' package.json",
    "sed -i 's/localhost/127.0.0.1/g' config/dev.yaml",
    "git stash && git checkout -b feature/login && git stash pop",
    "tool42 sub run --fast",
    "tool1337 deploy --dry-run",
    "tool2501 sub x | tool77 y && tool4999 status",
    "(cd frontend && yarn build) && cp -r frontend/dist public/",
    "mongo --eval 'db.stats()'",
    "mysql -e 'show tables' app_db > tables.txt",
)


# --------------------------------------------------------------------------------------------
# Policies


def write_generated_agent(directory: Path) -> Path:
    """The shared 5,000-rule agent (benchmarks/agents.py), as a real file."""
    path = directory / "generated-5000.md"
    path.write_text(generated_agent(), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The naive reference: every regex, in order, last match wins


class NaivePolicy:
    """Answers ``Policy.lookup`` by trying every rule's regex in file order."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._compiled: dict[int, tuple[tuple[re.Pattern[str], Rule], ...]] = {}
        sets = [*policy.rulesets.values()]
        if policy.fallback is not None:
            sets.append(policy.fallback)
        for rs in sets:
            self._compiled[id(rs)] = tuple((pattern_regex(r.pattern), r) for r in rs.rules)

    def lookup(self, permission: str, subject: str) -> tuple[Action, Rule | None]:
        dis = self.policy.disabled.get(permission)
        if dis is not None:
            return "deny", dis
        rs = self.policy.ruleset(permission)
        found: Rule | None = None
        if rs is not None:
            for regex, rule in self._compiled[id(rs)]:
                if regex.fullmatch(subject) is not None:
                    found = rule
        if found is None:
            return "ask", None
        return found.action, found

    def decide_part(self, part: Part) -> PartDecision:
        action, rule = self.lookup(part.permission, part.subject)
        for variant in part.variants:
            v_action, v_rule = self.lookup(part.permission, variant)
            if STRICTNESS[v_action] > STRICTNESS[action]:
                action, rule = v_action, v_rule
        for text in part.written:  # the command as written: a rule only it matches
            w_action, w_rule = self.lookup(part.permission, text)
            if (
                STRICTNESS[w_action] > STRICTNESS[action]
                and w_rule is not None
                and not pattern_regex(w_rule.pattern).fullmatch(part.subject)
            ):
                action, rule = w_action, w_rule
        if STRICTNESS[part.floor] > STRICTNESS[action]:
            action = part.floor
        return PartDecision(part.permission, part.subject, action, rule, part.note)

    def decide_command(self, command: str) -> engine.Decision:
        analysis = engine.analyse_command(command, CWD, HOME)
        return combine(tuple(self.decide_part(p) for p in analysis.parts), self.policy.name)


# --------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Result:
    policy: str
    rules: int
    level: str
    ops_per_pass: int
    ns_per_op: float

    @property
    def us_per_op(self) -> float:
        return self.ns_per_op / 1000.0

    @property
    def ops_per_s(self) -> float:
        return 1e9 / self.ns_per_op if self.ns_per_op else float("inf")


def median_ns_per_op(
    run_pass: Callable[[], object],
    ops: int,
    repeats: int,
    before: Callable[[], object] | None = None,
    min_pass_ns: int = 20_000_000,
) -> float:
    """Median over ``repeats`` timings of ``run_pass`` (one pass = ``ops`` operations).

    A timing repeats the pass until it has taken at least ``min_pass_ns``; ``before`` runs
    before every pass, outside the timed region (e.g. clearing a cache).
    """
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(repeats):
            total = 0
            passes = 0
            while total < min_pass_ns or passes == 0:
                if before is not None:
                    before()
                gc.disable()
                t0 = time.perf_counter_ns()
                run_pass()
                total += time.perf_counter_ns() - t0
                if gc_was_enabled:
                    gc.enable()
                passes += 1
            samples.append(total / (passes * ops))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


def pin_to_one_cpu() -> str:
    setter = getattr(os, "sched_setaffinity", None)
    getter = getattr(os, "sched_getaffinity", None)
    if setter is None or getter is None:
        return "not pinned (no sched_setaffinity here)"
    try:
        cpus: set[int] = getter(0)
        cpu = min(cpus)
        setter(0, {cpu})
    except OSError as exc:
        return f"not pinned ({exc.strerror})"
    return f"pinned to CPU {cpu}"


def subjects_of(commands: Sequence[str]) -> list[tuple[str, str]]:
    """(permission, subject) pairs the engine looks up for the corpus: parts and variants."""
    out: list[tuple[str, str]] = []
    for command in commands:
        for part in engine.analyse_command(command, CWD, HOME).parts:
            out.append((part.permission, part.subject))
            out.extend((part.permission, v) for v in part.variants)
    return out


def rule_count(policy: Policy) -> int:
    return sum(len(rs.rules) for rs in policy.rulesets.values())


def bench_policy(
    label: str, policy: Policy, subjects: list[tuple[str, str]], repeats: int
) -> list[Result]:
    naive = NaivePolicy(policy)
    n_rules = len(policy.rulesets["bash"].rules)
    commands = CORPUS
    results: list[Result] = []

    # The engine and the reference must agree before their speed means anything.
    for command in commands:
        fast = decide_command(policy, command, CWD, HOME)
        slow = naive.decide_command(command)
        if fast.decision != slow.decision or [p.rule for p in fast.parts] != [
            p.rule for p in slow.parts
        ]:
            raise SystemExit(f"{label}: engine and naive loop disagree on {command!r}")

    def lookups() -> None:
        lookup = policy.lookup
        for permission, subject in subjects:
            lookup(permission, subject)

    def naive_lookups() -> None:
        lookup = naive.lookup
        for permission, subject in subjects:
            lookup(permission, subject)

    def decisions() -> None:
        for command in commands:
            decide_command(policy, command, CWD, HOME)

    def naive_decisions() -> None:
        for command in commands:
            naive.decide_command(command)

    bash_rs: RuleSet = policy.rulesets["bash"]
    bash_subjects = [s for p, s in subjects if p == "bash"]

    def ruleset_lookups() -> None:
        lookup = bash_rs.lookup
        for subject in bash_subjects:
            lookup(subject)

    clear = engine._cached_analysis.cache_clear
    n_sub, n_cmd = len(subjects), len(commands)
    timings: list[tuple[str, Callable[[], object], int, Callable[[], object] | None]] = [
        ("RuleSet.lookup (bash)", ruleset_lookups, len(bash_subjects), None),
        ("Policy.lookup", lookups, n_sub, None),
        ("naive lookup", naive_lookups, n_sub, None),
        ("decide_command cold", decisions, n_cmd, clear),
        ("decide_command warm", decisions, n_cmd, None),
        ("naive decide warm", naive_decisions, n_cmd, None),
    ]
    for level, fn, ops, before in timings:
        if before is None:
            fn()  # warm the analysis cache and the interpreter's own caches
        ns = median_ns_per_op(fn, ops, repeats, before)
        results.append(Result(label, n_rules, level, ops, ns))
    return results


# --------------------------------------------------------------------------------------------
# Report


def table(results: list[Result]) -> str:
    head = f"{'policy':<18} {'bash rules':>10}  {'measure':<24} {'ops/pass':>8} "
    head += f"{'µs/op':>10} {'ops/s':>12}"
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(
            f"{r.policy:<18} {r.rules:>10}  {r.level:<24} {r.ops_per_pass:>8} "
            f"{r.us_per_op:>10.3f} {r.ops_per_s:>12,.0f}"
        )
    return "\n".join(rows)


def ratios(results: list[Result], small: str, large: str) -> dict[str, float]:
    by = {(r.policy, r.level): r.ns_per_op for r in results}

    def rel(a: tuple[str, str], b: tuple[str, str]) -> float:
        return by[a] / by[b]

    return {
        "scale_matcher_policy_lookup": rel((large, "Policy.lookup"), (small, "Policy.lookup")),
        "scale_matcher_ruleset_lookup": rel(
            (large, "RuleSet.lookup (bash)"), (small, "RuleSet.lookup (bash)")
        ),
        "scale_decision_cold": rel((large, "decide_command cold"), (small, "decide_command cold")),
        "scale_decision_warm": rel((large, "decide_command warm"), (small, "decide_command warm")),
        "naive_over_engine_lookup": rel((large, "naive lookup"), (large, "Policy.lookup")),
        "naive_over_engine_decision_warm": rel(
            (large, "naive decide warm"), (large, "decide_command warm")
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repetitions")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions each")
    args = parser.parse_args(argv)
    repeats: int = args.repeats or (3 if args.quick else 9)

    pinned = pin_to_one_cpu()
    small = load_policy_file(EXAMPLE)
    with tempfile.TemporaryDirectory(prefix="gatekeeper-bench-") as tmp:
        large = load_policy_file(write_generated_agent(Path(tmp)))
    subjects = subjects_of(CORPUS)

    results = bench_policy("example", small, subjects, repeats)
    results += bench_policy("generated", large, subjects, repeats)
    r = ratios(results, "example", "generated")

    info = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu": pinned,
        "repeats": repeats,
        "commands": len(CORPUS),
        "subjects": len(subjects),
        "rules": {"example": rule_count(small), "generated": rule_count(large)},
    }
    if args.json:
        out = {
            "info": info,
            "results": [
                {
                    "policy": x.policy,
                    "bash_rules": x.rules,
                    "measure": x.level,
                    "ops_per_pass": x.ops_per_pass,
                    "us_per_op": round(x.us_per_op, 4),
                    "ops_per_s": round(x.ops_per_s, 1),
                }
                for x in results
            ],
            "ratios": {k: round(v, 3) for k, v in r.items()},
            "targets": {"scale_max": 1.2, "naive_over_engine_min": 200},
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0

    print(
        f"gatekeeper engine benchmark — Python {info['python']} ({info['machine']}), {pinned}, "
        f"median of {repeats}; {len(CORPUS)} command lines, {len(subjects)} subjects"
    )
    print(f"rules in all permissions: example {rule_count(small)}, generated {rule_count(large)}")
    print()
    print(table(results))
    print()

    def verdict(ok: bool) -> str:
        return "meets target" if ok else "MISSES target"

    print("Cost at 5,000 rules / cost at ~15 rules (target ≤ 1.2x):")
    for key, name in (
        ("scale_matcher_ruleset_lookup", "matcher, RuleSet.lookup"),
        ("scale_matcher_policy_lookup", "matcher, Policy.lookup"),
        ("scale_decision_cold", "decision, cold"),
        ("scale_decision_warm", "decision, warm"),
    ):
        print(f"  {name:<26} {r[key]:6.2f}x  {verdict(r[key] <= 1.2)}")
    print("Naive loop / engine at 5,000 rules (target ≥ 200x):")
    for key, name in (
        ("naive_over_engine_lookup", "matcher (per lookup)"),
        ("naive_over_engine_decision_warm", "decision, warm"),
    ):
        print(f"  {name:<26} {r[key]:6.0f}x  {verdict(r[key] >= 200)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
