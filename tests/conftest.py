from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "policies" / "backend-engineer.md"
DEFAULT = REPO / "policies" / "default.md"


@pytest.fixture
def write_agent(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write an agent file with the given frontmatter body; return its path."""

    def _write(frontmatter: str, name: str = "agent") -> Path:
        path = tmp_path / f"{name}.md"
        path.write_text(f"---\n{frontmatter.strip()}\n---\n\nbody\n", encoding="utf-8")
        return path

    return _write
