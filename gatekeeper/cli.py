"""Command line entry point: ``gatekeeper SUBCOMMAND …``."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    return 0
