"""gatekeeper: a local daemon between AI coding agents and your shell."""

__version__ = "0.1.0"
