"""``python -m gatekeeper`` runs the CLI."""

from gatekeeper.cli import main

raise SystemExit(main())
