// gatekeeper plugin for opencode: every bash command and every file edit is decided by the
// gatekeeper daemon before opencode runs it.
//
// Install:  gatekeeper hook opencode-plugin > ~/.config/opencode/plugin/gatekeeper.js
//
// allow → opencode goes on (its own permission rules still apply);
// ask   → the daemon waits for a human in `gatekeeper approve`, then allows or blocks;
// deny, a rejection, a timeout, or no daemon at all → the tool call is blocked, and the
//         reason (and the human's message) is what the agent sees.
// The agent is $GATEKEEPER_AGENT, else the daemon's default agent; the socket is
// $GATEKEEPER_SOCKET, else $XDG_RUNTIME_DIR/gatekeeper/gatekeeper.sock.
import net from "node:net"
import path from "node:path"

const EDIT_TOOLS = { edit: "edit", multiedit: "edit", patch: "edit", write: "write" }

export function socketPath(env = process.env) {
  if (env.GATEKEEPER_SOCKET) return env.GATEKEEPER_SOCKET
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "gatekeeper", "gatekeeper.sock")
  return `/tmp/gatekeeper-${process.getuid()}/gatekeeper.sock`
}

// One check on its own connection; resolves with the daemon's final reply.
export function check(request, socket = socketPath()) {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket)
    let buffer = ""
    let done = false
    const finish = (fn, value) => {
      if (!done) {
        done = true
        conn.destroy()
        fn(value)
      }
    }
    conn.setEncoding("utf8")
    conn.on("connect", () => {
      conn.write(JSON.stringify({ v: 1, id: 1, op: "check", wait: true, ...request }) + "\n")
    })
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
          continue
        }
        if (message.id !== 1 || message.event === "waiting") continue
        finish(resolve, message)
      }
    })
    conn.on("error", (err) => finish(reject, err))
    conn.on("close", () => finish(reject, new Error("the daemon closed the connection")))
  })
}

export function requestFor(tool, args, directory, env = process.env) {
  const agent = env.GATEKEEPER_AGENT || undefined
  if (tool === "bash") {
    if (typeof args.command !== "string") return { invalid: "a bash call without a command" }
    return { command: args.command, cwd: args.workdir || directory, agent }
  }
  if (tool in EDIT_TOOLS) {
    const file = args.filePath ?? args.file_path ?? args.path
    if (typeof file !== "string") return { invalid: `a ${tool} call without a file path` }
    return { path: file, permission: EDIT_TOOLS[tool], cwd: directory, agent }
  }
  return null // not a tool gatekeeper decides
}

export async function decide(tool, args, directory, socket = socketPath()) {
  const request = requestFor(tool, args ?? {}, directory)
  if (request === null) return
  if (request.invalid) throw new Error(`gatekeeper: ${request.invalid}; not running it unchecked`)
  let reply
  try {
    reply = await check(request, socket)
  } catch (err) {
    throw new Error(`gatekeeper: no daemon at ${socket} (${err.message}); not running ${tool} unchecked`)
  }
  if (reply.error) throw new Error(`gatekeeper refused the check: ${reply.error.message}`)
  if (reply.decision === "allow") return
  const message = reply.message ? ` — ${reply.message}` : ""
  throw new Error(`gatekeeper blocked this: ${reply.reason}${message}`)
}

export const GatekeeperPlugin = async ({ directory }) => ({
  "tool.execute.before": async (input, output) => {
    await decide(input.tool, output.args, directory)
  },
})
