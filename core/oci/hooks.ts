/**
 * OCI hooks: programs the caller names in config.json, run by the runtime at fixed points
 * with the container's state JSON on stdin. micro runs prestart and createRuntime once the
 * container's process exists in its namespaces and cgroups (before its mounts and
 * pivot_root), poststart after `start`, poststop at `delete`. createContainer and
 * startContainer run inside the container: ops the engine's child runs (containerHookOps,
 * core/engine/hook.ts).
 */
import { MicroError } from "../errors.ts";
import { HOOK_STATE_MAX, stateBytes } from "../engine/hook.ts";
import { type Op, op } from "../ops.ts";
import { OCI_VERSION } from "./state.ts";

export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type HookKind = "prestart" | "createRuntime" | "poststart" | "poststop";
/** The hooks the container's own process runs (by the engine's child). */
export type InContainerHookKind = "createContainer" | "startContainer";
const ALL_KINDS = [
  "prestart",
  "createRuntime",
  "createContainer",
  "startContainer",
  "poststart",
  "poststop",
];

/**
 * The ops for createContainer and startContainer hooks: the state each gets (its pid is
 * filled in by the child). A state over a pipe's buffer is refused (it is written before
 * the fork).
 */
export function containerHookOps(
  hooks: Partial<Record<HookKind | InContainerHookKind, Hook[]>>,
  id: string,
  bundle: string,
  annotations: Record<string, string>,
): Op[] {
  const ops: Op[] = [];
  const kinds: [InContainerHookKind, string][] = [
    ["createContainer", "creating"],
    ["startContainer", "created"],
  ];
  for (const [hook, status] of kinds) {
    for (const [index, h] of (hooks[hook] ?? []).entries()) {
      const state = {
        ociVersion: OCI_VERSION,
        id,
        status,
        bundle,
        ...(Object.keys(annotations).length ? { annotations } : {}),
      };
      if (stateBytes(state).bytes.length > HOOK_STATE_MAX) {
        throw new MicroError(
          `config.json: hooks.${hook}[${index}]: the state JSON is over ${HOOK_STATE_MAX} bytes`,
          { phase: "check", plugin: "oci", hint: "fewer or shorter annotations" },
        );
      }
      ops.push(op("exec", "oci", "oci-hook", {
        hook,
        index,
        path: h.path,
        args: h.args ?? [],
        env: h.env ?? [],
        ...(h.timeout ? { timeout: h.timeout } : {}),
        state,
      }));
    }
  }
  return ops;
}

/**
 * Runs each hook in order with `state` on stdin; the first failure (exit status, signal,
 * timeout) is an error naming the hook.
 */
export async function runHooks(
  kind: HookKind,
  hooks: Hook[],
  state: Record<string, unknown>,
): Promise<void> {
  const input = new TextEncoder().encode(JSON.stringify(state));
  for (const [k, h] of hooks.entries()) {
    const name = `hooks.${kind}[${k}] ${h.path}`;
    const env = Object.fromEntries((h.env ?? []).map((e) => {
      const i = e.indexOf("=");
      return i < 0 ? [e, ""] : [e.slice(0, i), e.slice(i + 1)];
    }));
    let child: Deno.ChildProcess;
    try {
      // args[0] is the hook's argv[0]; Deno runs it as the path (a limitation noted here).
      child = new Deno.Command(h.path, {
        args: (h.args ?? []).slice(1),
        env,
        clearEnv: true,
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new MicroError(`${name}: cannot run: ${(e as Error).message}`, {
        phase: "hook",
        plugin: "oci",
        hint: "hooks[].path must be an absolute path to an executable on the host",
      });
    }
    let timedOut = false;
    const timer = h.timeout
      ? setTimeout(() => {
        timedOut = true;
        try {
          child.kill("SIGKILL");
        } catch {
          // gone
        }
      }, h.timeout * 1000)
      : undefined;
    // stderr is read beside the wait, not waited for: a process the hook left behind (its
    // own child) keeps the pipe open, and the timeout must still end the hook's turn.
    const said = readCapped(child.stderr, 2048);
    try {
      const w = child.stdin.getWriter();
      await w.write(input).catch(() => {});
      await w.close().catch(() => {});
      const out = await child.status;
      if (timedOut) {
        throw new MicroError(`${name}: timed out after ${h.timeout} s`, {
          phase: "hook",
          plugin: "oci",
        });
      }
      if (!out.success) {
        const text = await Promise.race([said.text, delay(200).then(() => "")]);
        const how = out.signal ? `killed by ${out.signal}` : `exit status ${out.code}`;
        throw new MicroError(`${name}: ${how}${text ? `: ${text.split("\n")[0]}` : ""}`, {
          phase: "hook",
          plugin: "oci",
        });
      }
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      said.cancel();
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The first `cap` bytes of `stream` as text once it ends (or is cancelled); `cancel` stops
 * reading, so a pipe a hook's leftover child holds does not keep micro waiting.
 */
function readCapped(
  stream: ReadableStream<Uint8Array>,
  cap: number,
): { text: Promise<string>; cancel: () => void } {
  const reader = stream.getReader();
  const buf = new Uint8Array(cap);
  let n = 0;
  const text = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const take = Math.min(value.length, cap - n);
        buf.set(value.subarray(0, take), n);
        n += take;
      }
    } catch {
      // cancelled
    }
    return new TextDecoder().decode(buf.subarray(0, n)).trim();
  })();
  return { text, cancel: () => void reader.cancel().catch(() => {}) };
}

/**
 * startContainer hooks are the container's own files, run while their parent is still a
 * copy of micro's runtime (its /proc/PID/exe the host's Deno binary; runc and crun run
 * their init from a sealed memfd copy instead). Not dumpable stops the container's root,
 * but not CAP_SYS_PTRACE over the host's user namespace: such a hook could open that
 * binary and rewrite it once no micro runs (CVE-2019-5736), or attach to its parent. So
 * they are refused where the process may hold it: no user namespace of the container's
 * (made or joined), and CAP_SYS_PTRACE in its bounding set (or no capabilities given).
 */
export function refuseExposedHooks(
  hooks: Partial<Record<HookKind | InContainerHookKind, Hook[]>>,
  userns: boolean,
  bounding: string[] | undefined,
): void {
  if (!hooks.startContainer?.length || userns) return;
  if (bounding && !bounding.includes("CAP_SYS_PTRACE")) return;
  throw new MicroError(
    "config.json: hooks.startContainer: refused: the container's process may hold " +
      `CAP_SYS_PTRACE (${
        bounding ? "in process.capabilities.bounding" : "no capabilities given"
      })` +
      " without a user namespace of its own, and the hook, a file of the container's, would " +
      "run beside micro's runtime, which it could then open through /proc/PID/exe",
    {
      phase: "check",
      plugin: "oci",
      hint: "drop CAP_SYS_PTRACE from process.capabilities, add a user namespace, or use a " +
        "poststart hook",
    },
  );
}

/** `hooks` from config.json, checked, by kind. */
export function parseHooks(
  v: unknown,
): Partial<Record<HookKind | InContainerHookKind, Hook[]>> {
  const bad = (f: string, why: string) =>
    new MicroError(`config.json: ${f}: ${why}`, {
      phase: "check",
      plugin: "oci",
      hint: "fix the bundle's config.json (see the OCI runtime spec)",
    });
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw bad("hooks", "expected an object");
  const out: Partial<Record<HookKind | InContainerHookKind, Hook[]>> = {};
  for (const [kind, list] of Object.entries(v as Record<string, unknown>)) {
    if (!ALL_KINDS.includes(kind)) {
      throw bad(`hooks.${kind}`, "unknown field");
    }
    if (!Array.isArray(list)) throw bad(`hooks.${kind}`, "expected a list");
    out[kind as HookKind | InContainerHookKind] = list.map((h, k) => {
      const f = `hooks.${kind}[${k}]`;
      if (!h || typeof h !== "object" || Array.isArray(h)) throw bad(f, "expected an object");
      const o = h as Record<string, unknown>;
      for (const key of Object.keys(o)) {
        if (!["path", "args", "env", "timeout"].includes(key)) {
          throw bad(`${f}.${key}`, "unknown field");
        }
      }
      if (typeof o.path !== "string" || !o.path.startsWith("/")) {
        throw bad(`${f}.path`, "expected an absolute path");
      }
      const strs = (x: unknown, g: string) => {
        if (x === undefined) return undefined;
        if (!Array.isArray(x) || x.some((y) => typeof y !== "string")) {
          throw bad(`${f}.${g}`, "expected a list of strings");
        }
        return x as string[];
      };
      const timeout = o.timeout;
      if (timeout !== undefined && (!Number.isInteger(timeout) || (timeout as number) <= 0)) {
        throw bad(`${f}.timeout`, "expected a whole number of seconds above 0");
      }
      return {
        path: o.path,
        ...(strs(o.args, "args") ? { args: strs(o.args, "args") } : {}),
        ...(strs(o.env, "env") ? { env: strs(o.env, "env") } : {}),
        ...(timeout !== undefined ? { timeout: timeout as number } : {}),
      };
    });
  }
  return out;
}
