"""What the daemon does with a request: decide it, record it, ask a human, run it, answer.

:class:`Requests` serves ``check`` (answered at once when the decision is already known,
else after the analysis workers), ``run`` (decide → record → block, ask, or execute → record
the outcome), ``cancel`` and ``answer``. There is one path that waits for a human
(:meth:`Requests.ask_human`), used by runs and by checks that wait; one place that decides
whether a question was answered or timed out (:meth:`~gatekeeper.approval.Approvals.resolve`:
the first resolution wins, and every party hears that one); and every decision and outcome is
written to the audit log before the reply or the action it describes.

A run dies with its connection and with its cancel at any moment: before its decision is
made, while a human is asked, between the decision and the start (a process started after a
cancel is killed at once), and while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from gatekeeper.analysis_worker import AnalysisPool
from gatekeeper.approval import Approvals, HumanAnswer, approver_refusal
from gatekeeper.audit import AuditError, AuditLog
from gatekeeper.connections import Conn
from gatekeeper.engine import Decision, Session, decide_analysis, decide_path
from gatekeeper.errors import BadInput, GatekeeperError
from gatekeeper.executor import Execution, Guardian, pump, split_utf8
from gatekeeper.executor import start as start_process
from gatekeeper.policy import Policy
from gatekeeper.policystore import PolicyStore
from gatekeeper.protocol import (
    Answer,
    Check,
    ProtocolError,
    Run,
    encode,
    encode_id,
    error_reply,
    event,
)

log = logging.getLogger(__name__)

_REPLY_CACHE = 4096  # encoded check replies kept (cleared whole when full)
# The status of a run its timeout ended: killed by SIGKILL (negative: a signal), whatever bash
# itself had returned before its leftovers were killed — never a success.
TIMED_OUT = -9


@dataclass(slots=True, eq=False)
class RunState:
    """A run (or a check that waits) in flight on a connection."""

    request_id: Any
    pending_key: str | None = None
    execution: Execution | None = None
    ref: int | None = None  # seq of its decision record in the audit log
    cancelled: str | None = None


# (agent, permission of a path check, subject, cwd, home, root)
_CheckKey = tuple[str, str | None, str, str, str | None, str | None]


@dataclass(slots=True, eq=False)
class CheckState:
    """One check request as far as it is decided."""

    policy: Policy
    session: Session | None
    cwd: str
    subject: str
    home: str | None
    key: _CheckKey
    root: str | None = None
    decision: Decision | None = None
    body: bytes | None = None  # the decision's JSON
    members: bytes | None = None  # its audit record's fields, encoded (cached with the reply)


class Requests:
    """The daemon's answers to check, run, cancel and answer."""

    def __init__(
        self,
        store: PolicyStore,
        analyser: AnalysisPool,
        approvals: Approvals,
        guardian: Guardian,
        *,
        audit: Callable[[], AuditLog | None],
        approval_timeout: float,
        approvers_need_tty: bool,
    ) -> None:
        self.store = store
        self.analyser = analyser
        self.approvals = approvals
        self.guardian = guardian
        self.audit = audit
        self.approval_timeout = approval_timeout
        self.approvers_need_tty = approvers_need_tty
        self.executions: dict[int, Execution] = {}
        # Encoded check replies by request; entries carry the objects they were computed from
        # and count only while those are still the live ones.
        self._replies: dict[
            _CheckKey,
            tuple[Policy, Any, Decision, bytes, bytes | None],
        ] = {}
        self._markers = itertools.count(1)

    def forget_replies(self) -> None:
        """Drop the reply cache (after a reload or an "always")."""
        self._replies.clear()

    # -- decisions ----------------------------------------------------------------------------

    def decide_now(
        self,
        policy: Policy,
        command: str,
        cwd: str,
        home: str | None,
        env: Any = None,
        root: str | None = None,
    ) -> Decision | None:
        """The decision from what the analysis workers already said; None if they must be
        asked (off the event loop: :meth:`decide`)."""
        analysis = self.analyser.cached(command, cwd, home, root)
        if analysis is None:
            return None
        session = self.store.session_sets.get(policy.name)
        decision = decide_analysis(policy, analysis, session=session, env=env)
        if decision.decision != "allow":
            return decision
        extra = self.analyser.cached_confirmation(analysis.command)
        if extra is None:
            return None
        if extra:
            decision = decide_analysis(policy, analysis, session=session, env=env, extra=extra)
        return decision

    async def decide(
        self,
        conn: Conn,
        policy: Policy,
        command: str | bytes,
        cwd: str,
        home: str | None,
        env: dict[str, str] | None = None,
        root: str | None = None,
    ) -> Decision:
        """Decide a command line: analysed in a worker; a would-be allow is confirmed by the
        independent readers first (an ask or deny needs no confirmation: stricter is safe)."""
        analysis = await self.analyser.analyse(command, cwd, home, client=conn, root=root)
        session = self.store.session_sets.get(policy.name)
        decision = decide_analysis(policy, analysis, session=session, env=env)
        if decision.decision == "allow":
            extra = await self.analyser.confirm(analysis, client=conn)
            if extra:
                decision = decide_analysis(policy, analysis, session=session, env=env, extra=extra)
        return decision

    # -- check --------------------------------------------------------------------------------

    def known(self, conn: Conn, req: Check) -> CheckState:
        """A check as far as it can be decided now: from a reply made before, for a path, or
        for a command the analysis workers have already read. ``decision`` is None when they
        must be asked first (off the event loop: :meth:`decide_check`)."""
        policy = self.store.policy_for(req.agent, req.id)
        root = req.root
        cwd = req.cwd or root or client_cwd(conn, req.id)
        if not cwd.startswith("/"):
            raise ProtocolError("bad_request", "field 'cwd' must be an absolute path", req.id)
        home = daemon_home(None)
        subject = req.path if req.path is not None else req.command or ""
        key = (
            policy.name, req.permission if req.path is not None else None, subject, cwd, home, root
        )  # fmt: skip
        session = self.store.session_sets.get(policy.name)
        state = CheckState(policy, session, cwd, subject, home, key, root)
        hit = self._replies.get(key)
        if hit is not None and hit[0] is policy and hit[1] is state.session:
            state.decision, state.body, state.members = hit[2], hit[3], hit[4]
            return state
        try:
            if req.path is not None:
                found: Decision | None = decide_path(
                    policy,
                    req.permission or "edit",
                    req.path,
                    cwd,
                    home,
                    session=state.session,
                    root=root,
                )
            else:
                found = self.decide_now(policy, subject, cwd, home, root=root)
        except BadInput as exc:
            raise ProtocolError("bad_request", str(exc), req.id) from None
        if found is not None:
            self._remember(state, found)
        return state

    def _remember(self, state: CheckState, decision: Decision) -> None:
        # The decision is a pure function of these immutable values (a reload or an
        # "always" replaces the policy or session object), so its encoded form can be
        # reused for the same request: only the id differs. Keyed on the objects in force
        # when the request came: a reload meanwhile leaves an entry never used again.
        state.decision = decision
        state.body = encode(decision.to_json())[:-1]
        if len(self._replies) >= _REPLY_CACHE:
            self._replies.clear()
        self._replies[state.key] = (state.policy, state.session, decision, state.body, None)

    def check_now(self, conn: Conn, req: Check) -> bytes | None:
        """A check answered in the turn of the event loop that read it, or None if the
        analysis workers must be asked first (then :meth:`check_later` answers)."""
        state = self.known(conn, req)
        if state.body is None:
            return None
        self.record_check(conn, req, state)
        return decision_reply(req.id, state.policy.name, state.body)

    async def check_later(self, conn: Conn, req: Check) -> None:
        try:
            state = await self.decide_check(conn, req)
            assert state.body is not None  # noqa: S101 - decided
            self.record_check(conn, req, state)
            conn.write_raw(decision_reply(req.id, state.policy.name, state.body))
        except ProtocolError as exc:
            conn.write(exc.reply())
        except Exception:
            log.exception("internal error in check %r", req.id)
            conn.write(error_reply(req.id, "internal", "internal error; see the daemon log"))

    async def decide_check(self, conn: Conn, req: Check) -> CheckState:
        """Decide and record a check (its audit seq is ``ref`` of the returned state's)."""
        state = self.known(conn, req)
        if state.decision is None:
            try:
                decision = await self.decide(
                    conn, state.policy, state.subject, state.cwd, state.home, root=state.root
                )
            except BadInput as exc:
                raise ProtocolError("bad_request", str(exc), req.id) from None
            self._remember(state, decision)
        return state

    def record_check(self, conn: Conn, req: Check, state: CheckState) -> int | None:
        if self.audit() is None:
            return None
        if state.members is None:
            record: dict[str, Any] = {
                "kind": "decision",
                "op": "check",
                "agent": state.policy.name,
                "cwd": state.cwd,
                "decided_by": "policy",
            }
            if state.root is not None:
                record["root"] = state.root
            if req.path is not None:
                record.update(path=req.path, permission=req.permission)
            else:
                record["command"] = state.subject
            if req.wait:
                record["wait"] = True
            state.members = encode(record)[1:-2]  # the same for every such check: cached
            if state.key in self._replies and not req.wait:
                self._replies[state.key] = (*self._replies[state.key][:4], state.members)
        extra = {"context": req.context} if req.context else {}
        return self.record(conn, req.id, extra, state.body, state.members)

    async def check_and_wait(self, conn: Conn, req: Check, state: RunState) -> None:
        """A check that, on ask, waits for a human like a run does (for plugins that can only
        allow or block, such as opencode's tool.execute.before)."""
        try:
            checked = await self.decide_check(conn, req)
            policy, decision, body = checked.policy, checked.decision, checked.body
            assert decision is not None  # noqa: S101 - decided
            assert body is not None  # noqa: S101
            state.ref = self.record_check(conn, req, checked)
            if decision.decision != "ask":
                conn.write_raw(decision_reply(req.id, policy.name, body))
                return
            what = "command" if req.path is None else "path"
            answer = await self.ask_human(
                conn, req.id, state, policy, decision, checked.cwd, checked.subject,
                outcome={"op": "check", "cwd": checked.cwd, what: checked.subject},
                context=req.context,
            )  # fmt: skip
            final: dict[str, Any] = {
                "id": req.id,
                "agent": policy.name,
                **decision.to_json(),
                "decision": "allow" if answer.approved else "deny",
                "reason": self.answer_reason(answer),
                "by": answer.decided_by,
            }
            if answer.message and answer.answer == "reject":
                final["message"] = answer.message
            conn.write(final)
        except ProtocolError as exc:
            conn.write(exc.reply())
        except Exception:
            log.exception("internal error in a waiting check %r", req.id)
            conn.write(error_reply(req.id, "internal", "internal error; see the daemon log"))
        finally:
            conn.runs.pop(req.id, None)

    # -- the human ------------------------------------------------------------------------------

    async def ask_human(
        self,
        conn: Conn,
        rid: Any,
        state: RunState,
        policy: Policy,
        decision: Decision,
        cwd: str,
        subject: str,
        *,
        outcome: dict[str, Any],
        context: dict[str, str] | None = None,
    ) -> HumanAnswer:
        """Park a request until a human answers, it times out, or it is cancelled; record the
        outcome (fields of ``outcome`` plus the answer) and return the one answer that won."""
        first = decision.first_ask
        item = self.approvals.add(
            agent=policy.name,
            cwd=cwd,
            command=subject,
            decision=decision,
            client_pid=conn.pid,
            client_name=conn.name,
            timeout=self.approval_timeout,
            permission=first.permission if first is not None else "bash",
            context=context,
        )
        state.pending_key = item.key
        if state.cancelled:  # cancelled while it was being decided
            self.approvals.resolve(item.key, HumanAnswer("cancelled", message=state.cancelled))
        await conn.send(
            event(
                rid,
                "waiting",
                request=item.key,
                timeout_s=self.approval_timeout,
                approvers=self.approvals.approvers,
            )
        )
        try:
            answer = await asyncio.wait_for(asyncio.shield(item.future), self.approval_timeout)
        except TimeoutError:
            # The timeout and an answer can land in the same moment: the first resolution
            # wins, and the loser takes the winner's answer (never one of each).
            self.approvals.resolve(item.key, HumanAnswer("timeout"))
            answer = item.future.result()
        finally:
            state.pending_key = None
        self.record(
            conn, rid, {
                "kind": "outcome", "ref": state.ref, "agent": policy.name, **outcome,
                "outcome": "approved" if answer.approved else "blocked",
                "decided_by": answer.decided_by, "answer": answer.answer,
                "pattern": answer.pattern, "message": answer.message,
            },
        )  # fmt: skip
        return answer

    def answer_reason(self, answer: HumanAnswer) -> str:
        if answer.answer == "once":
            return "approved once by a human"
        if answer.answer == "always":
            return f"approved always ({answer.pattern}) by a human"
        return {
            "reject": "rejected by a human",
            "timeout": f"nobody answered within {self.approval_timeout:g} s",
            "cancelled": answer.message or "cancelled",
        }.get(answer.answer, answer.answer)

    def answer(self, conn: Conn, req: Answer) -> dict[str, Any]:
        """A human's answer to a pending request; refused for who may not answer, and for a
        request that is no longer pending (answered, timed out or cancelled meanwhile)."""
        item = self.approvals.items.get(req.request)
        if item is None:
            raise ProtocolError(
                "not_found",
                f"no pending request {req.request!r} (answered, timed out or cancelled)",
                req.id,
            )
        refusal = approver_refusal(
            conn.pid,
            item.client_pid,
            {e.pid for e in self.executions.values()},
            require_tty=self.approvers_need_tty,
        )
        if refusal is not None:
            raise ProtocolError("forbidden", refusal, req.id)
        pattern = req.pattern
        if req.answer == "always":
            pattern = pattern or item.suggestion
            if not pattern:
                raise ProtocolError("bad_request", "an 'always' answer needs a 'pattern'", req.id)
        if not self.approvals.resolve(item.key, HumanAnswer(req.answer, pattern, req.message)):
            raise ProtocolError(
                "not_found", f"request {req.request!r} was decided meanwhile", req.id
            )
        reply: dict[str, Any] = {"id": req.id, "ok": True, "request": req.request}
        reply["pattern"] = pattern
        if req.answer == "always" and pattern:
            self.store.add_session_rule(item.agent, item.permission, pattern, f"pid {conn.pid}")
            self.forget_replies()
            if req.persist:
                # The approval stands either way; whether the file could be edited is reported.
                first = item.decision.first_ask
                try:
                    reply["saved"] = self.store.persist_rule(
                        item.agent,
                        item.permission,
                        pattern,
                        first.subject if first is not None else None,
                    )
                    self.forget_replies()
                except GatekeeperError as exc:
                    reply["saved"] = None
                    reply["save_error"] = str(exc)
        return reply

    # -- runs -----------------------------------------------------------------------------------

    def cancel(self, state: RunState, why: str) -> None:
        state.cancelled = why
        if state.pending_key is not None:
            self.approvals.resolve(state.pending_key, HumanAnswer("cancelled", message=why))
        if state.execution is not None:
            state.execution.kill(why)

    async def run_guarded(self, conn: Conn, req: Run, state: RunState) -> None:
        try:
            await self.run(conn, req, state)
        except ProtocolError as exc:
            await conn.send(exc.reply())
        except Exception:
            log.exception("internal error in run %r", req.id)
            await conn.send(error_reply(req.id, "internal", "internal error; see the daemon log"))
        finally:
            conn.runs.pop(req.id, None)

    async def run(self, conn: Conn, req: Run, state: RunState) -> None:
        rid = req.id
        policy = self.store.policy_for(req.agent, rid)
        if not os.path.isdir(req.cwd):
            raise ProtocolError("bad_request", f"cwd {req.cwd!r} is not a directory", rid)
        env = dict(req.env) if req.env is not None else daemon_env()
        try:
            decision = await self.decide(
                conn, policy, req.command, req.cwd, daemon_home(env), env, root=req.root
            )
        except BadInput as exc:
            raise ProtocolError("bad_request", str(exc), rid) from None
        state.ref = self.record(
            conn, rid,
            {"kind": "decision", "op": "run", "agent": policy.name, "cwd": req.cwd,
             **({"root": req.root} if req.root is not None else {}),
             "command": req.command, "decided_by": "policy",
             **({"context": req.context} if req.context else {})},
            encode(decision.to_json())[:-1],
        )  # fmt: skip
        await conn.send(event(rid, "decision", agent=policy.name, **decision.to_json()))
        if decision.decision == "deny":
            self._outcome(conn, req, policy.name, state, outcome="blocked", decided_by="policy")
            await self._blocked(conn, rid, decision.reason, None, "policy")
            return
        if decision.decision == "ask":
            answer = await self.ask_human(
                conn, rid, state, policy, decision, req.cwd, req.command,
                outcome={"op": "run", "cwd": req.cwd, "command": req.command},
                context=req.context,
            )  # fmt: skip
            reason = self.answer_reason(answer)
            await conn.send(
                event(
                    rid,
                    "decision",
                    agent=policy.name,
                    decision="allow" if answer.approved else "deny",
                    reason=reason,
                    parts=decision.to_json()["parts"],
                    by=answer.decided_by,
                )
            )
            if not answer.approved:
                message = answer.message if answer.answer == "reject" else None
                await self._blocked(conn, rid, reason, message, answer.answer)
                return
        if state.cancelled:
            self._outcome(
                conn, req, policy.name, state,
                outcome="blocked", decided_by="cancelled", message=state.cancelled,
            )  # fmt: skip
            await self._blocked(conn, rid, state.cancelled, None, "cancelled")
            return
        await self.execute(conn, req, state, env, policy.name)

    async def _blocked(
        self, conn: Conn, rid: Any, reason: str, message: str | None, by: str
    ) -> None:
        body: dict[str, Any] = {"decision": "deny", "reason": reason, "by": by}
        if message:
            body["message"] = message
        await conn.send(event(rid, "blocked", **body))

    async def execute(
        self, conn: Conn, req: Run, state: RunState, env: dict[str, str], agent: str
    ) -> None:
        rid = req.id
        marker = f"{os.getpid()}-{next(self._markers)}"
        began = time.monotonic()
        self.guardian.expect(marker)
        try:
            execution = await start_process(req.command, req.cwd, env, req.stdin, marker)
        except OSError as exc:
            self._outcome(
                conn, req, agent, state,
                outcome="error", message=f"cannot start the command: {exc}",
            )  # fmt: skip
            raise ProtocolError("bad_request", f"cannot start the command: {exc}", rid) from None
        state.execution = execution
        self.executions[execution.pid] = execution
        self.guardian.watch(execution.pid, marker)
        if state.cancelled:
            # Cancelled (or its client gone) while the process was being started: it dies
            # before it can do anything.
            execution.kill(state.cancelled)
        counts = {"stdout": 0, "stderr": 0}
        carry = {"stdout": b"", "stderr": b""}

        async def sink(stream: str, data: bytes) -> None:
            counts[stream] += len(data)
            data = carry[stream] + data
            text, rest = split_utf8(data)
            carry[stream] = rest
            if text is None:
                await conn.send(binary_output(rid, stream, data))
            elif text:
                await conn.send(event(rid, "output", stream=stream, data=text))

        timed_out = False
        try:
            try:
                code = await asyncio.wait_for(pump(execution, req.stdin, sink), req.timeout)
            except TimeoutError:
                timed_out = True
                execution.kill("timeout")
                await execution.proc.wait()
                code = TIMED_OUT
        finally:
            self.executions.pop(execution.pid, None)
            self.guardian.forget(execution.pid)
        for stream, rest in carry.items():
            if rest:  # a multi-byte character cut off at the very end
                await conn.send(binary_output(rid, stream, rest))
        duration_ms = round((time.monotonic() - began) * 1000, 3)
        body: dict[str, Any] = {"code": code, "duration_ms": duration_ms}
        if timed_out:
            body["timed_out"] = True
        if execution.killed_by and not timed_out:
            body["killed"] = execution.killed_by
        self._outcome(
            conn, req, agent, state, outcome="exit", exit=code,
            duration_ms=duration_ms, stdout_bytes=counts["stdout"],
            stderr_bytes=counts["stderr"], timed_out=timed_out,
            killed=execution.killed_by if not timed_out else None,
        )  # fmt: skip
        await conn.send(event(rid, "exit", **body))

    # -- the audit log --------------------------------------------------------------------------

    def record(
        self,
        conn: Conn,
        rid: Any,
        record: dict[str, Any],
        decision_json: bytes | None = None,
        members: bytes = b"",
    ) -> int | None:
        """Write one audit record before the reply goes out; its seq, or None without a log.

        ``members`` are fields already encoded (a warm check's, kept with its cached reply).
        If the record cannot be written, the request fails: nothing happens unrecorded.
        """
        audit = self.audit()
        if audit is None:
            return None
        head = b'"id":' + encode_id(rid) + b"," + conn.client_json
        try:
            return audit.write(record, decision_json, head + (b"," + members if members else b""))
        except AuditError as exc:
            raise ProtocolError(
                "internal", f"the audit log cannot be written, so nothing was done: {exc}", rid
            ) from None

    def _outcome(self, conn: Conn, req: Run, agent: str, state: RunState, **fields: Any) -> None:
        self.record(
            conn,
            req.id,
            {
                "kind": "outcome",
                "op": "run",
                "ref": state.ref,
                "agent": agent,
                "cwd": req.cwd,
                "command": req.command,
                **fields,
            },
        )


def binary_output(rid: Any, stream: str, data: bytes) -> dict[str, Any]:
    """An output event for bytes that are not UTF-8 text."""
    return event(
        rid, "output", stream=stream, data=base64.b64encode(data).decode(), encoding="base64"
    )


def decision_reply(rid: Any, agent: str, decision_json: bytes) -> bytes:
    """A check reply line from the encoded decision: only the id and agent are added."""
    return (
        b'{"id":'
        + encode_id(rid)
        + b',"agent":'
        + encode_id(agent)
        + b","
        + decision_json[1:]
        + b"\n"
    )


def client_cwd(conn: Conn, rid: Any) -> str:
    """The client's working directory (a check without ``cwd``)."""
    if conn.pid:
        with contextlib.suppress(psutil.Error):
            return str(psutil.Process(conn.pid).cwd())
    raise ProtocolError("bad_request", "missing field 'cwd'", rid)


def daemon_home(env: dict[str, str] | None) -> str | None:
    if env is not None and env.get("HOME", "").startswith("/"):
        return env["HOME"]
    return os.environ.get("HOME")


def daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(key, None)
    return env
