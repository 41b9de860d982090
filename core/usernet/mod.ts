/**
 * Rootless networks: pasta or slirp4netns gives the container's network namespace a tap
 * device backed by ordinary sockets of the caller's, so an unprivileged user gets outgoing
 * traffic and published ports without a bridge, veth or NAT rule. The engine starts the
 * helper in `attach` (the child waits, its user and network namespaces exist and its id
 * maps are written) against its pid, and stops it in `cleanup`.
 */
import { writeDnsFiles } from "../cni/dns.ts";
import type { PortMapping } from "../cni/ports.ts";
import { MicroError } from "../errors.ts";
import type { Op } from "../ops.ts";
import {
  hostfwdRequest,
  PACKAGE,
  PASTA_PIDFILE,
  pastaArgs,
  SLIRP_RECORD,
  SLIRP_SOCKET,
  slirpArgs,
  type Tool,
} from "./args.ts";
import { helperPid, openHelper } from "./record.ts";
import { openLibc } from "../sys/libc.ts";

type StartOp = Op & { kind: "usernet-start" };

/** A helper that is not ready by then is killed and the run fails. */
const START_TIMEOUT_MS = 15_000;

const dec = new TextDecoder();

function failure(tool: Tool, message: string, hint?: string): MicroError {
  return new MicroError(message, {
    phase: "attach",
    plugin: "net",
    op: tool,
    hint: hint ?? `is ${PACKAGE[tool]} working here? /dev/net/tun must be readable and writable`,
  });
}

/** What a helper said on stderr, on one line. */
function said(bytes: Uint8Array): string {
  return dec.decode(bytes.subarray(0, 4096)).split("\n").map((l) => l.trim())
    .filter((l) => l && !/syslog/i.test(l)).join("; ");
}

export class UsernetOps {
  private slirp: Deno.ChildProcess | null = null;
  private dir: string | null = null;

  constructor(private readonly plan: Op[]) {}

  /** attach: start the plan's helper for the waiting child `pid`, then write its DNS files. */
  async attach(pid: number): Promise<void> {
    for (const o of this.plan) {
      if (o.phase !== "attach" || o.kind !== "usernet-start") continue;
      const op = o as StartOp;
      this.dir = op.args.dir;
      if (op.args.tool === "pasta") await this.pasta(op, pid);
      else await this.slirp4netns(op, pid);
      if (op.args.files) writeFiles(op);
    }
  }

  private async pasta(o: StartOp, pid: number): Promise<void> {
    const pidfile = `${o.args.dir}/${PASTA_PIDFILE}`;
    let out: Deno.CommandOutput;
    try {
      // pasta forks into the background once the namespace is set up: its exit is the
      // readiness report, its pid file the record cleanup and gc stop it by.
      out = await new Deno.Command(o.args.path, {
        args: pastaArgs(o.args.publish, pidfile, pid),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(START_TIMEOUT_MS),
      }).output();
    } catch (e) {
      throw failure("pasta", `cannot run ${o.args.path}: ${(e as Error).message.split("\n")[0]}`);
    }
    if (!out.success) {
      throw failure("pasta", `pasta failed (exit status ${out.code}): ${said(out.stderr)}`);
    }
  }

  private async slirp4netns(o: StartOp, pid: number): Promise<void> {
    const socket = `${o.args.dir}/${SLIRP_SOCKET}`;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(o.args.path, {
        args: slirpArgs(socket, pid),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw failure(
        "slirp4netns",
        `cannot run ${o.args.path}: ${(e as Error).message.split("\n")[0]}`,
      );
    }
    this.slirp = child;
    Deno.writeTextFileSync(`${o.args.dir}/${SLIRP_RECORD}`, `${child.pid}\n`, { mode: 0o600 });
    // --ready-fd=1: it writes "1" once the tap is up; EOF first means it failed.
    const reader = child.stdout.getReader();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, START_TIMEOUT_MS);
    let ready = "";
    try {
      while (!ready.includes("1")) {
        const { value, done } = await reader.read();
        if (done) break;
        ready += dec.decode(value);
      }
    } finally {
      clearTimeout(timer);
      reader.releaseLock();
    }
    if (!ready.includes("1")) {
      const err = await readAll(child.stderr);
      const status = await child.status;
      this.slirp = null;
      throw failure(
        "slirp4netns",
        `slirp4netns failed (${
          status.signal ? `killed by ${status.signal}` : `exit status ${status.code}`
        }): ${said(err)}`,
      );
    }
    // Its stdout and stderr are not read again: let them go so nothing blocks on them.
    child.stdout.cancel().catch(() => {});
    child.stderr.cancel().catch(() => {});
    for (const m of o.args.publish) await hostfwd(socket, m);
  }

  /** cleanup: stop the helper (pasta by its pid file, slirp4netns by closing its stdin). */
  async cleanup(): Promise<string[]> {
    const problems: string[] = [];
    const dir = this.dir;
    this.dir = null;
    const slirp = this.slirp;
    this.slirp = null;
    if (slirp) {
      try {
        await slirp.stdin.close();
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          slirp.kill("SIGKILL");
        } catch { /* gone */ }
      }, 2000);
      await slirp.status;
      clearTimeout(timer);
    }
    if (dir) {
      // Through a pidfd: the helper's pid may be another process's once it has ended.
      const sys = openLibc();
      const pidfd = openHelper(dir, sys);
      if (pidfd >= 0) {
        try {
          let rc = sys.pidfdSendSignal(pidfd, 15);
          if (rc === 0 && !await gone(dir, 2000)) rc = sys.pidfdSendSignal(pidfd, 9);
          if (rc < 0 && rc !== -3) problems.push(`stop the network helper: errno ${-rc}`);
        } finally {
          sys.close(pidfd);
        }
      }
      for (const f of [PASTA_PIDFILE, SLIRP_RECORD, SLIRP_SOCKET]) {
        try {
          Deno.removeSync(`${dir}/${f}`);
        } catch { /* not this run's helper */ }
      }
    }
    return problems;
  }
}

/** Whether the helper of the state dir `dir` ended within `ms` (its command line is gone). */
async function gone(dir: string, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 20) {
    if (helperPid(dir) === undefined) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const c of stream) {
    if (size < 4096) chunks.push(c);
    size += c.length;
  }
  const out = new Uint8Array(Math.min(size, 4096 + 65536));
  let at = 0;
  for (const c of chunks) {
    out.set(c.subarray(0, out.length - at), at);
    at += Math.min(c.length, out.length - at);
  }
  return out.subarray(0, at);
}

/** One port through slirp4netns's API socket: a JSON request, a JSON reply. */
async function hostfwd(socket: string, m: PortMapping): Promise<void> {
  const where = `${m.hostIP || "0.0.0.0"}:${m.hostPort}/${m.protocol}`;
  let reply = "";
  try {
    const conn = await Deno.connect({ transport: "unix", path: socket });
    try {
      await conn.write(new TextEncoder().encode(JSON.stringify(hostfwdRequest(m))));
      conn.closeWrite();
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(buf.subarray(reply.length));
        if (n === null || reply.length + n >= buf.length) break;
        reply += dec.decode(buf.subarray(reply.length, reply.length + n));
      }
    } finally {
      conn.close();
    }
  } catch (e) {
    throw failure("slirp4netns", `publish ${where}: ${(e as Error).message.split("\n")[0]}`);
  }
  let r: { error?: { desc?: string } } = {};
  try {
    r = JSON.parse(reply);
  } catch { /* said below */ }
  if (!reply || r.error) {
    throw failure(
      "slirp4netns",
      `publish ${where}: ${r.error?.desc ?? (reply.trim() || "no reply")}`,
      "is the host port free? stop what listens there, or publish another",
    );
  }
}

function writeFiles(o: StartOp): void {
  const f = o.args.files!;
  writeDnsFiles(o.args.dir, { ...f, address: f.address });
}
