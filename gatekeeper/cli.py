"""Command line entry point: ``gatekeeper SUBCOMMAND …`` (``python -m gatekeeper`` too).

One place turns errors into exit statuses: library code raises :class:`GatekeeperError`,
``main`` prints one line that says what is wrong and returns the status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gatekeeper import __version__
from gatekeeper.errors import BadInput, GatekeeperError

# Exit statuses shared by every command (check adds 3 ask, 4 deny; see docs/cli.md).
EXIT_ERROR = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="Stand between AI coding agents and your shell: decide, ask, audit.",
    )
    parser.add_argument("--version", action="version", version=f"gatekeeper {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="decide a command (or a file path) under a policy and explain why",
        description=(
            "Decide a command or a file path and explain the decision. Exit status: "
            "0 allow, 3 ask, 4 deny, 1 error, 2 usage."
        ),
    )
    src = check.add_mutually_exclusive_group()
    src.add_argument("--policy", metavar="FILE", help="one agent file")
    src.add_argument(
        "--policy-dir",
        metavar="DIR",
        help="directory of agent files (default: $GATEKEEPER_POLICY_DIR or the bundled ones)",
    )
    check.add_argument(
        "--agent",
        metavar="NAME",
        help="agent in --policy-dir (default: $GATEKEEPER_AGENT or 'default')",
    )
    check.add_argument(
        "--cwd",
        metavar="DIR",
        help="project root the command runs in (default: the current directory)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--permission",
        choices=("edit", "write"),
        help="decide a file path for this permission (with --path)",
    )
    check.add_argument("--path", metavar="PATH", help="the file path to decide")
    check.add_argument(
        "cmd",
        nargs="?",
        metavar="COMMAND",
        help="the command line; '-' reads it from stdin as raw bytes",
    )

    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument(
        "--policy-dir",
        metavar="DIR",
        help="agent files (default: $GATEKEEPER_POLICY_DIR or the bundled ones)",
    )
    serve.add_argument(
        "--socket",
        metavar="PATH",
        help="socket path (default: $XDG_RUNTIME_DIR/gatekeeper/gatekeeper.sock)",
    )
    serve.add_argument(
        "--audit-log",
        metavar="PATH",
        help="audit log (default: $XDG_STATE_HOME/gatekeeper/audit.jsonl)",
    )
    serve.add_argument("--no-audit", action="store_true", help="write no audit log")
    serve.add_argument(
        "--audit-fsync",
        choices=("always", "batch", "never"),
        help="when the audit log reaches the disk: after every record, once a "
        "second (default), or when the OS decides",
    )
    serve.add_argument(
        "--default-agent",
        metavar="NAME",
        help="agent for requests that name none (default: 'default')",
    )
    serve.add_argument(
        "--approval-timeout",
        type=float,
        metavar="SECONDS",
        help="deny a run nobody answered within this time (default: 120)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, let runs finish this long before killing them (5)",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (default: ~/.config/gatekeeper/config.toml)",
    )

    run = sub.add_parser(
        "run",
        help="run a command through the daemon",
        description="Run COMMAND through the daemon. Exits with the "
        "command's status; 126 when blocked, 125 when the daemon is unavailable.",
    )
    run.add_argument(
        "--agent", metavar="NAME", help="agent (default: $GATEKEEPER_AGENT or the daemon's default)"
    )
    run.add_argument("--socket", metavar="PATH", help="daemon socket")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="kill the command after")
    run.add_argument("words", nargs=argparse.REMAINDER, metavar="-- COMMAND…")

    status = sub.add_parser("status", help="show whether the daemon runs and what it serves")
    status.add_argument("--socket", metavar="PATH", help="daemon socket")
    status.add_argument("--json", action="store_true")

    approve = sub.add_parser(
        "approve",
        help="answer pending requests: a terminal app, or one answer for scripts",
        description="Without arguments: the terminal app. With ID and an answer: answer one "
        "request. Exit status: 0 done, 1 error, 2 usage, 3 refused (this process may not "
        "approve).",
    )
    approve.add_argument("--socket", metavar="PATH", help="daemon socket")
    approve.add_argument("--list", action="store_true", help="list pending requests")
    approve.add_argument("--json", action="store_true", help="with --list: JSON lines")
    approve.add_argument("request", nargs="?", metavar="ID", help="pending request, e.g. p3")
    approve.add_argument("answer", nargs="?", choices=("once", "always", "reject"))
    approve.add_argument("--pattern", metavar="P", help="with always: the rule to remember")
    approve.add_argument("--message", metavar="M", help="with reject: a message for the agent")
    approve.add_argument(
        "--persist",
        action="store_true",
        help="with always: also write the rule into the agent's file",
    )

    # Options shared by `audit` and its subcommands default to SUPPRESS, so that a value given
    # before the subcommand (`audit --audit-log P summary`) is not overwritten by the
    # subcommand's own default; main_audit supplies the defaults.
    quiet = argparse.SUPPRESS
    log_opt = argparse.ArgumentParser(add_help=False)
    log_opt.add_argument(
        "--audit-log",
        metavar="PATH",
        default=quiet,
        help="the audit log (default: $GATEKEEPER_AUDIT_LOG or "
        "$XDG_STATE_HOME/gatekeeper/audit.jsonl)",
    )
    log_opt.add_argument(
        "--json",
        action="store_true",
        default=quiet,
        help="JSON output (the records, or one object)",
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument(
        "--since", metavar="WHEN", default=quiet, help="30m, 1h, 2d, 1w or an ISO date/time"
    )
    filters.add_argument(
        "--until",
        metavar="WHEN",
        default=quiet,
        help="same forms; a date alone means the end of that day",
    )
    filters.add_argument("--agent", metavar="NAME", default=quiet)
    filters.add_argument(
        "--decision",
        metavar="D",
        default=quiet,
        choices=("allow", "ask", "deny", "once", "always", "reject", "timeout", "cancelled"),
        help="the policy's decision, or the human's answer",
    )
    filters.add_argument(
        "--grep", metavar="TEXT", default=quiet, help="text in the command, path or reason"
    )
    filters.add_argument(
        "--session",
        metavar="ID",
        default=quiet,
        help="one harness session (Claude Code's, Codex's or opencode's session id)",
    )
    audit = sub.add_parser(
        "audit",
        parents=[log_opt, filters],
        help="review the audit log: what ran, what was blocked, who decided",
    )
    audit.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    summary = audit_sub.add_parser(
        "summary",
        parents=[log_opt, filters],
        help="counts, what was asked most, what people approved again and again",
    )
    summary.add_argument("--top", type=int, default=10, metavar="N")
    suggest = audit_sub.add_parser(
        "suggest",
        parents=[log_opt, filters],
        help="the rules people keep approving, as frontmatter",
    )
    suggest.add_argument(
        "--min", type=int, default=2, metavar="N", help="approved at least N times (2)"
    )
    verify = audit_sub.add_parser(
        "verify", parents=[log_opt], help="check the hash chain across rotated files"
    )
    verify.add_argument(
        "--anchor",
        metavar="HASH",
        help="a head printed by an earlier verify: it must still be there",
    )
    replay = audit_sub.add_parser(
        "replay",
        parents=[log_opt, filters],
        help="re-decide recorded requests under another policy",
    )
    replay.add_argument("--policy", metavar="FILE", required=True)

    hook = sub.add_parser(
        "hook",
        help="agent integrations: Claude Code's and Codex's hooks, the opencode plugin, "
        "and their installers",
    )
    hook_sub = hook.add_subparsers(dest="hook_kind", metavar="AGENT", required=True)
    for name, what in (
        ("claude-code", "Claude Code"),
        ("codex", "Codex"),
    ):
        h = hook_sub.add_parser(
            name,
            help=f"read {what}'s PreToolUse JSON on stdin, print its decision JSON",
            description=f"{what} PreToolUse hook (see gatekeeper.hooks): shell commands and "
            "file tools are checked by the daemon. Always exits 0.",
        )
        _hook_options(h)
        h.add_argument(
            "--deadline", type=float, metavar="S", help="give up on the daemon after S seconds"
        )
    hook_sub.add_parser(
        "opencode-plugin",
        help="print the opencode plugin (gatekeeper hook install opencode saves it)",
    )
    for verb in ("install", "uninstall"):
        inst = hook_sub.add_parser(
            verb,
            help=f"{verb} gatekeeper's hook in claude-code, codex or opencode settings",
            description=f"{verb.capitalize()} gatekeeper's hook: merges into existing "
            "settings, idempotent. Default target: the user's settings.",
        )
        inst.add_argument("harness", choices=("claude-code", "codex", "opencode"))
        where = inst.add_mutually_exclusive_group()
        where.add_argument("--user", action="store_true", help="the user's settings (default)")
        where.add_argument(
            "--project", metavar="DIR", help="a project's settings (.claude/, .opencode/)"
        )
        where.add_argument("--settings", metavar="FILE", help="claude-code: this settings file")
        where.add_argument("--codex-home", metavar="DIR", help="codex: this CODEX_HOME")
        where.add_argument("--dir", metavar="DIR", help="opencode: this plugin directory")
        if verb == "install":
            _hook_options(inst)

    pol = sub.add_parser("policy", help="lint, test or explain agent files")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    ci = argparse.ArgumentParser(add_help=False)
    ci.add_argument("files", nargs="+", metavar="FILE")
    ci.add_argument("--strict", action="store_true", help="warnings fail too")
    ci.add_argument(
        "--format",
        choices=("text", "json", "sarif"),
        default=None,
        help="text (default), json (one object per finding) or sarif (SARIF 2.1.0)",
    )
    ci.add_argument("--json", action="store_true", help="the same as --format json")
    status_help = (
        "Exit status: 0 clean, 1 findings (errors; warnings too with --strict), 2 usage or "
        "a file that cannot be read."
    )
    pol_sub.add_parser(
        "lint",
        parents=[ci],
        help="find mistakes and risky rules; run the file's tests",
        description="Lint agent files and run their own test cases. " + status_help,
    )
    pol_sub.add_parser(
        "test",
        parents=[ci],
        help="run only the files' own test cases (gatekeeper: tests:)",
        description="Run the files' own test cases. --strict: a file without any fails. "
        + status_help,
    )
    explain = pol_sub.add_parser(
        "explain",
        help="show the compiled rules in order; with --agent, opencode's sources merged",
        description="FILE: the compiled rules of one agent file. --agent NAME: the agent as "
        "opencode sees it, merged from every source opencode reads (global and project "
        "opencode.json[c], agent directories), each rule with its file and line; with a "
        "COMMAND (or --path), which source and line decided each part.",
    )
    explain.add_argument("target", nargs="?", metavar="FILE|COMMAND")
    explain.add_argument("--agent", metavar="NAME", help="an opencode agent: merge its sources")
    explain.add_argument(
        "--project", metavar="DIR", help="with --agent: the opencode project (default: .)"
    )
    explain.add_argument(
        "--config-dir",
        metavar="DIR",
        help="with --agent: opencode's global config (default: ~/.config/opencode)",
    )
    explain.add_argument(
        "--cwd", metavar="DIR", help="with --agent: where the command runs (default: --project)"
    )
    explain.add_argument(
        "--permission", choices=("edit", "write"), help="with --path: the permission"
    )
    explain.add_argument("--path", metavar="PATH", help="with --agent: a file path to decide")
    explain.add_argument("--json", action="store_true", help="with --agent: one JSON object")
    return parser


def _hook_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agent", metavar="NAME", help="agent (default: $GATEKEEPER_AGENT or the daemon's default)"
    )
    p.add_argument(
        "--socket", metavar="PATH", help="daemon socket (default: $GATEKEEPER_SOCKET, …)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="on ask, wait for a human in gatekeeper approve (headless sessions)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="gatekeeper: %(levelname)s: %(message)s",
    )
    try:
        return _dispatch(parser, args)
    except BadInput as exc:
        sys.stderr.write(f"gatekeeper: bad input: {exc}\n")
        return EXIT_ERROR
    except GatekeeperError as exc:
        sys.stderr.write(f"gatekeeper: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "hook":
        from gatekeeper.commands import hook as hook_cmd

        if args.hook_kind == "opencode-plugin":
            return hook_cmd.opencode_plugin()
        if args.hook_kind in ("install", "uninstall"):
            if args.hook_kind == "uninstall":
                args.agent = args.socket = None
                args.wait = False
            if args.harness != "claude-code" and args.settings:
                parser.error("--settings is for claude-code")
            if args.harness != "codex" and args.codex_home:
                parser.error("--codex-home is for codex")
            if args.harness != "opencode" and args.dir:
                parser.error("--dir is for opencode")
            if (
                args.harness == "opencode"
                and args.hook_kind == "install"
                and (args.agent or args.socket or args.wait)
            ):
                parser.error(
                    "opencode: the plugin reads $GATEKEEPER_AGENT and $GATEKEEPER_SOCKET, and "
                    "always waits for a human on ask"
                )
            return hook_cmd.install(args)
        return hook_cmd.run_hook(
            args.hook_kind,
            socket_path=args.socket,
            agent=args.agent,
            wait=args.wait,
            deadline=args.deadline,
        )
    if args.command == "check":
        from gatekeeper.commands import check as check_cmd

        if args.path is None and args.cmd is None:
            parser.error("check: give a COMMAND, '-' to read it from stdin, or --path PATH")
        if args.path is not None and args.cmd is not None:
            parser.error("check: give either a COMMAND or --path, not both")
        if args.permission and args.path is None:
            parser.error("check: --permission goes with --path")
        return check_cmd.run(
            command=args.cmd,
            permission=args.permission,
            path=args.path,
            policy_file=args.policy,
            policy_dir=args.policy_dir,
            agent=args.agent,
            cwd=args.cwd,
            as_json=args.json,
        )
    if args.command == "serve":
        from gatekeeper.commands import serve as serve_cmd

        return serve_cmd.run(
            policy_dir_flag=args.policy_dir,
            socket_flag=args.socket,
            audit_log_flag=args.audit_log,
            no_audit=args.no_audit,
            default_agent=args.default_agent,
            approval_timeout=args.approval_timeout,
            grace=args.grace,
            config_file=args.config,
            audit_fsync=args.audit_fsync,
        )
    if args.command == "run":
        from gatekeeper.commands import run as run_cmd

        return run_cmd.run(
            words=args.words,
            socket_path=args.socket,
            agent=args.agent or os.environ.get("GATEKEEPER_AGENT"),
            timeout=args.timeout,
        )
    if args.command == "approve":
        from gatekeeper.commands import approve as approve_cmd

        if (args.request is None) != (args.answer is None):
            parser.error("approve: give both ID and once|always|reject, or neither")
        if args.list and args.request is not None:
            parser.error("approve: --list takes no ID")
        return approve_cmd.run(
            socket_path=args.socket,
            list_only=args.list,
            as_json=args.json,
            request=args.request,
            answer=args.answer,
            pattern=args.pattern,
            message=args.message,
            persist=args.persist,
        )
    if args.command == "audit":
        from gatekeeper.commands.audit import main_audit

        return main_audit(args)
    if args.command == "status":
        from gatekeeper.commands import status as status_cmd

        return status_cmd.run(socket_path=args.socket, as_json=args.json)
    if args.command == "policy":
        from gatekeeper.commands import policy as policy_cmd

        if args.policy_command in ("lint", "test"):
            if args.json and args.format not in (None, "json"):
                parser.error(f"policy {args.policy_command}: --json and --format {args.format}")
            fmt: policy_cmd.Format = args.format or ("json" if args.json else "text")
            run = policy_cmd.lint if args.policy_command == "lint" else policy_cmd.run_file_tests
            return run(files=args.files, strict=args.strict, fmt=fmt)
        if args.policy_command == "explain":
            if args.agent is None:
                if args.target is None:
                    parser.error("policy explain: give a FILE, or --agent NAME")
                if args.project or args.config_dir or args.cwd or args.path or args.json:
                    parser.error("policy explain: --project, --path … go with --agent")
                return policy_cmd.explain(file=args.target)
            if args.path is not None and args.target is not None:
                parser.error("policy explain: give either a COMMAND or --path, not both")
            if args.permission and args.path is None:
                parser.error("policy explain: --permission goes with --path")
            return policy_cmd.explain_agent(
                agent=args.agent,
                project=args.project,
                config_dir=args.config_dir,
                cwd=args.cwd,
                command=args.target,
                path=args.path,
                permission=args.permission or "edit",
                as_json=args.json,
            )
        parser.parse_args(["policy", "--help"])
        return EXIT_USAGE
    parser.print_help()
    return EXIT_USAGE
