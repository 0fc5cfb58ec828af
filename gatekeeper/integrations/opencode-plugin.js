// gatekeeper plugin for opencode: every bash command and every file edit is decided by the
// gatekeeper daemon before opencode runs it.
//
// Install:  gatekeeper hook install opencode   (or: gatekeeper hook opencode-plugin > FILE)
//
// allow → opencode goes on (its own permission rules still apply);
// ask   → the daemon waits for a human in `gatekeeper approve`, then allows or blocks;
// deny, a rejection, a timeout, no daemon, or anything unexpected → the tool call is blocked,
//         and the reason (and the human's message) is what the agent sees.
//
// What is decided: `bash` (the command, run in its `workdir`), `edit`/`multiedit` (edit of
// filePath), `write` (write of filePath), `apply_patch`/`patch` (every file of the patch:
// `*** Add File:` a write, `*** Update File:`/`*** Delete File:` an edit, `*** Move to:` a
// write of the destination). Paths are resolved the way opencode resolves them (against the
// directory opencode runs in), so the daemon decides the file opencode will touch.
//
// The policy: $GATEKEEPER_AGENT when set; else the opencode agent running the session (learned
// from the "chat.message" hook, or from opencode's session API for a session this plugin has
// not seen). An opencode agent with no gatekeeper policy is decided by the daemon's default
// agent, unless the daemon reports that its policies failed to load (then it blocks: the
// missing policy may be a broken one).
//
// The socket is $GATEKEEPER_SOCKET, else $XDG_RUNTIME_DIR/gatekeeper/gatekeeper.sock, else
// /tmp/gatekeeper-$UID/gatekeeper.sock.
//
// opencode calls every export of a plugin module as a plugin: this module exports exactly one
// function, GatekeeperPlugin; everything else is internal.
import net from "node:net"
import path from "node:path"

const EDIT_TOOLS = { edit: "edit", multiedit: "edit", write: "write" }
const PATCH_TOOLS = new Set(["apply_patch", "patch"])
// opencode's patch headers, and what each does to its path.
const PATCH_HEADERS = [
  ["*** Add File:", "write"],
  ["*** Update File:", "edit"],
  ["*** Delete File:", "edit"],
  ["*** Move to:", "write"],
]
const CONTEXT_VALUE_MAX = 1000 // the daemon takes up to 1,024 characters a value
// A daemon that accepts and never answers must not hang the tool call for ever: the first
// reply (a decision, or "waiting" for a human) comes within ANSWER_MS (20 s, or
// $GATEKEEPER_ANSWER_TIMEOUT seconds); after "waiting", the human's answer within the daemon's
// own approval timeout plus GRACE_MS. Past either: blocked.
const ANSWER_MS = (Number(process.env.GATEKEEPER_ANSWER_TIMEOUT) || 20) * 1000
const GRACE_MS = 30000

class Blocked extends Error {}

function socketPath(env) {
  if (env.GATEKEEPER_SOCKET) return env.GATEKEEPER_SOCKET
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "gatekeeper", "gatekeeper.sock")
  return `/tmp/gatekeeper-${process.getuid()}/gatekeeper.sock`
}

// One request on its own connection; resolves with the daemon's final reply to it (a
// check with "wait" first sends a "waiting" event, which is skipped).
function call(socket, body) {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket)
    let buffer = ""
    let done = false
    let timer = null
    const finish = (fn, value) => {
      if (!done) {
        done = true
        clearTimeout(timer)
        conn.destroy()
        fn(value)
      }
    }
    const deadline = (ms) => {
      clearTimeout(timer)
      timer = setTimeout(
        () => finish(reject, new Error(`the daemon did not answer within ${ms / 1000} s`)),
        ms,
      )
    }
    deadline(ANSWER_MS)
    conn.setEncoding("utf8")
    conn.on("connect", () => conn.write(JSON.stringify({ v: 1, id: 1, ...body }) + "\n"))
    conn.on("data", (chunk) => {
      buffer += chunk
      let newline
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        let message
        try {
          message = JSON.parse(line)
        } catch {
          finish(reject, new Error("the daemon sent a line that is not JSON"))
          return
        }
        if (message === null || typeof message !== "object") {
          finish(reject, new Error("the daemon sent something that is not an object"))
          return
        }
        if (message.id === null && message.error) return finish(resolve, message)
        if (message.id === 1 && message.event === "waiting") {
          const seconds = Number(message.timeout_s)
          deadline((Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : ANSWER_MS) + GRACE_MS)
          continue
        }
        if (message.id !== 1) continue
        return finish(resolve, message)
      }
    })
    conn.on("error", (err) => finish(reject, err))
    conn.on("close", () => finish(reject, new Error("the daemon closed the connection")))
  })
}

function short(value) {
  return Array.from(String(value)).slice(0, CONTEXT_VALUE_MAX).join("")
}

// The files a patch touches, as [permission, path as written]. This reads the patch the way
// opencode's parser does (a header is a line that starts with the marker; the path is the rest
// of the line, trimmed), but looks at every line, so it can only find more files than opencode
// touches, never fewer.
function patchTargets(text) {
  const targets = []
  for (const line of text.split("\n")) {
    for (const [marker, permission] of PATCH_HEADERS) {
      if (!line.startsWith(marker)) continue
      const file = line.slice(marker.length).trim()
      if (file) targets.push([permission, file])
    }
  }
  return targets
}

// What to ask the daemon about one tool call: a list of check requests (without agent and
// context), or null when gatekeeper has no opinion on the tool.
function checksFor(tool, args, directory, root) {
  const where = (file) => path.resolve(directory, file)
  if (tool === "bash") {
    if (typeof args.command !== "string") throw new Blocked("a bash call without a command")
    if (args.workdir !== undefined && args.workdir !== null && typeof args.workdir !== "string")
      throw new Blocked("a bash call whose workdir is not a string")
    const cwd = args.workdir ? where(args.workdir) : directory
    return [{ command: args.command, cwd, root }]
  }
  if (tool in EDIT_TOOLS) {
    const file = args.filePath ?? args.file_path ?? args.path
    if (typeof file !== "string" || !file) throw new Blocked(`a ${tool} call without a file path`)
    return [{ path: where(file), permission: EDIT_TOOLS[tool], cwd: directory, root }]
  }
  if (PATCH_TOOLS.has(tool)) {
    const text = args.patchText ?? args.patch_text ?? args.patch
    if (typeof text !== "string") throw new Blocked(`a ${tool} call without a patch`)
    const seen = new Set()
    const checks = []
    for (const [permission, file] of patchTargets(text)) {
      const full = where(file)
      if (seen.has(`${permission}\0${full}`)) continue
      seen.add(`${permission}\0${full}`)
      checks.push({ path: full, permission, cwd: directory, root })
    }
    if (checks.length === 0) throw new Blocked(`a ${tool} call that names no file`)
    return checks
  }
  return null
}

// The project root opencode works in: its worktree (the git top level), or the directory it
// runs in when there is no repository (opencode's worktree is then "/", which would make every
// path "inside the project").
function projectRoot(worktree, directory) {
  if (typeof worktree !== "string" || !path.isAbsolute(worktree)) return directory
  const top = path.resolve(worktree)
  if (top === "/" || (directory !== top && !directory.startsWith(top + path.sep))) return directory
  return top
}

export const GatekeeperPlugin = async ({ directory, worktree, client } = {}) => {
  const env = process.env
  const socket = socketPath(env)
  const cwd = path.resolve(typeof directory === "string" && directory ? directory : process.cwd())
  const root = projectRoot(worktree, cwd)
  const agents = new Map() // sessionID → the opencode agent running it

  // The opencode agent of a session this plugin has not seen a message of (it was loaded
  // later, or the message came another way): the agent of the session's last user message.
  async function lookUpAgent(sessionID) {
    const reply = await client.session.messages({ path: { id: sessionID } })
    const messages = Array.isArray(reply?.data) ? reply.data : []
    for (let i = messages.length - 1; i >= 0; i--) {
      const info = messages[i]?.info
      if (info?.role === "user" && typeof info.agent === "string" && info.agent) return info.agent
    }
    throw new Error(`no agent found for session ${sessionID}`)
  }

  async function agentFor(sessionID) {
    const known = agents.get(sessionID)
    if (known) return known
    let found
    try {
      found = await lookUpAgent(sessionID)
    } catch (err) {
      throw new Blocked(`cannot tell which opencode agent runs this session (${err.message})`)
    }
    agents.set(sessionID, found)
    return found
  }

  async function ask(body) {
    try {
      return await call(socket, body)
    } catch (err) {
      throw new Blocked(`no answer from the daemon at ${socket} (${err.message})`)
    }
  }

  // A check by the named policy; an opencode agent without a gatekeeper policy falls back to
  // the daemon's default agent, unless the daemon's policies failed to load.
  async function check(request, agent, fromOpencode, wait) {
    const body = { op: "check", ...request, ...(agent ? { agent } : {}), ...(wait ? { wait } : {}) }
    const reply = await ask(body)
    if (reply.error?.code !== "unknown_agent" || !fromOpencode) return reply
    const status = await ask({ op: "status" })
    if (status.error || status.reload_error) {
      const why = status.error ? status.error.message : status.reload_error
      throw new Blocked(`no policy for opencode agent ${agent}, and the daemon's policies did not all load (${why})`)
    }
    const { agent: _, ...rest } = body
    return ask(rest)
  }

  function verdict(reply) {
    if (reply.error) {
      const code = reply.error.code ? `${reply.error.code}: ` : ""
      throw new Blocked(`the daemon refused the check (${code}${reply.error.message})`)
    }
    if (reply.decision === "allow") return
    if (reply.decision === "deny") {
      const message = reply.message ? ` — ${reply.message}` : ""
      throw new Error(`gatekeeper blocked this: ${reply.reason}${message}`)
    }
    throw new Blocked(`the daemon gave no final decision (${JSON.stringify(reply.decision)})`)
  }

  async function decide(input, args) {
    const tool = input?.tool
    const checks = checksFor(tool, args && typeof args === "object" ? args : {}, cwd, root)
    if (checks === null) return
    const context = { harness: "opencode", tool: short(tool) }
    if (input.sessionID) context.session = short(input.sessionID)
    if (input.callID) context.call = short(input.callID)
    let agent = env.GATEKEEPER_AGENT || undefined
    const fromOpencode = !agent
    if (fromOpencode) {
      agent = await agentFor(input.sessionID)
      context.opencode_agent = short(agent)
    }
    const requests = checks.map((c) => ({ ...c, context }))
    if (requests.length === 1) return verdict(await check(requests[0], agent, fromOpencode, true))
    // Several files: a deny anywhere blocks without asking a human about the others.
    const first = await Promise.all(requests.map((r) => check(r, agent, fromOpencode, false)))
    for (const reply of first) if (reply.error || reply.decision === "deny") verdict(reply)
    for (let i = 0; i < requests.length; i++) {
      if (first[i].decision === "allow") continue
      verdict(await check(requests[i], agent, fromOpencode, true))
    }
  }

  return {
    "chat.message": async (input, output) => {
      const agent = output?.message?.agent ?? input?.agent
      if (input?.sessionID && typeof agent === "string" && agent) agents.set(input.sessionID, agent)
    },
    "tool.execute.before": async (input, output) => {
      try {
        await decide(input, output?.args)
      } catch (err) {
        if (err instanceof Blocked) throw new Error(`gatekeeper: ${err.message}; not running it unchecked`)
        if (err instanceof Error && err.message.startsWith("gatekeeper blocked this:")) throw err
        throw new Error(`gatekeeper: ${err?.message ?? err}; not running it unchecked`)
      }
    },
  }
}
