"""The generated agent both benchmarks measure: 5,000 realistic rules in one file."""

from __future__ import annotations

GENERATED_RULES = 5000

# Rules people really write, placed at the end so that the corpora hit rules late in the file.
FAMILIAR = (
    ('"git status*"', "allow"),
    ('"git log*"', "allow"),
    ('"git diff*"', "allow"),
    ('"git push --force*"', "ask"),
    ('"npm*"', "allow"),
    ('"pip*"', "allow"),
    ('"go*"', "allow"),
    ('"docker build*"', "allow"),
    ('"docker run*"', "allow"),
    ('"kubectl*"', "ask"),
    ('"terraform*"', "ask"),
    ('"rm *"', "deny"),
    ('"sudo *"', "deny"),
    ('"ls *"', "allow"),
    ('"grep *"', "allow"),
    ('"cat *"', "allow"),
    ('"true"', "allow"),
)


def generated_agent(n: int = GENERATED_RULES) -> str:
    """An agent file with n bash rules: ``"*": ask`` first, then distinct command prefixes in
    several shapes (``tool123 sub*``, ``tool123 *``, literal ``tool123 status``,
    ``tool123 run --profile=? *``, ``tool123 deploy*``), then the familiar rules; plus edit and
    write rules."""
    actions = ("allow", "ask", "deny")
    lines = ["---", "description: generated agent for benchmarks", "permission:", "  bash:"]
    lines.append('    "*": ask')
    for i in range(n - 1 - len(FAMILIAR)):
        action = actions[i % 3]
        shape = i % 5
        if shape == 0:
            pattern = f"tool{i} sub*"
        elif shape == 1:
            pattern = f"tool{i} *"
        elif shape == 2:
            pattern = f"tool{i} status"
        elif shape == 3:
            pattern = f"tool{i} run --profile=? *"
        else:
            pattern = f"tool{i} deploy*"
        lines.append(f'    "{pattern}": {action}')
    lines.extend(f"    {p}: {a}" for p, a in FAMILIAR)
    lines += ["  edit:", '    "*": ask', '    "src/*": allow', '    "*.lock": deny']
    lines += [f'    "generated/dir{i}/*": allow' for i in range(50)]
    lines += ["  write:", '    "*": ask']
    lines += ["---", "", "Generated for the benchmarks in benchmarks/.", ""]
    return "\n".join(lines)
