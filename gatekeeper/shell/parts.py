"""What the shell reader hands the engine: the parts of a line, and the readings behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gatekeeper.shell.reading import Reading

Floor = Literal["allow", "ask", "deny"]


@dataclass(frozen=True, slots=True)
class Part:
    """One thing a command line does that a policy decides.

    ``permission`` is ``bash`` (a simple command), ``write`` (a file it writes) or
    ``external_directory`` (a directory outside the project root). ``floor`` is the least strict
    decision this part may get whatever the rules say; ``note`` says why it was raised.
    ``variants`` are normalised spellings of the subject (``/usr/bin/git`` → ``git``) that are
    also decided and can only make the decision stricter. ``written`` is the simple command as
    the line spells it, assignments and redirections included (opencode's subject): a rule
    only that spelling matches can make the decision stricter too.
    """

    permission: str
    subject: str
    floor: Floor = "allow"
    note: str | None = None
    variants: tuple[str, ...] = ()
    written: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Source:
    """One text gatekeeper parsed (the line, or a string it runs: ``bash -c '…'``, ``eval``)
    and gatekeeper's reading of it, for the independent readers to confirm."""

    text: str
    reading: Reading


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything the engine needs from one command line.

    ``sources`` holds every text parsed on the way with gatekeeper's reading of it; an allow
    stands only once independent readers agree with each (:mod:`gatekeeper.readers`).
    """

    command: str
    parts: tuple[Part, ...]
    sources: tuple[Source, ...] = ()

    @property
    def sure(self) -> bool:
        """No part carries a floor: the rules alone decide, so an allow is possible."""
        return all(p.floor == "allow" for p in self.parts)
