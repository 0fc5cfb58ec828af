"""One error root for the whole package; ``cli.main`` turns these into exit codes."""

from __future__ import annotations


class GatekeeperError(Exception):
    """Base of every error gatekeeper raises on purpose."""


class PolicyError(GatekeeperError):
    """An agent file could not be loaded; the message names file, line, key and fix."""


class BadInput(GatekeeperError):
    """Input that is not a command at all: NUL bytes, invalid UTF-8, wrong types."""


class UnknownAgent(GatekeeperError):
    """A request named an agent that no policy defines."""
