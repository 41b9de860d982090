/**
 * `micro run` and `micro plan`: request → profile → spec → checks → plan → engine.
 * Everything before the engine is shared, so `micro plan` shows exactly what a run does.
 */
import { parseRun, type Request } from "./cli.ts";
import { runChecks } from "./checks.ts";
import { execute } from "./engine/mod.ts";
import { MicroError, MicroErrors } from "./errors.ts";
import { probeHost, resolveInRoot } from "./host.ts";
import type { Op } from "./ops.ts";
import { buildSpec, formatPlan, planRun } from "./plan.ts";
import { resolveProfile } from "./profile.ts";
import type { Spec } from "./spec.ts";
import {
  createRunDir,
  newId,
  processStartTime,
  removeRun,
  type RunState,
  stateRoot,
  writeState,
} from "./state.ts";
import { openLibc } from "./sys/libc.ts";
import { PLUGINS } from "../plugins/mod.ts";

export interface Prepared {
  req: Request;
  spec: Spec;
  ops: Op[];
  id: string;
  stateDir: string;
}

/** Everything up to the plan; no side effects. */
export function prepare(argv: string[]): Prepared {
  const req = parseRun(argv);
  const { profile } = resolveProfile(req.profiles, req.layer, PLUGINS);
  // Without root, namespaces other than user need a user namespace of their own.
  const uid = Deno.uid() ?? 0;
  if (uid !== 0 && profile.sections.user) profile.sections.user.enabled = true;
  const spec = buildSpec(
    { image: req.image, args: req.args, terminal: req.terminal, stdin: req.stdin },
    profile,
    PLUGINS,
  );
  const id = req.name ?? newId();
  const stateDir = `${stateRoot(uid)}/${id}`;
  const host = probeHost(spec, id, stateDir);
  const problems = runChecks(spec, host);
  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) throw new MicroErrors(problems);
  return { req, spec, ops: planRun(spec, host, PLUGINS), id, stateDir };
}

export function planCommand(argv: string[]): number {
  const p = prepare(argv);
  console.log(formatPlan(p.ops).trimEnd());
  return 0;
}

/**
 * Mount points a run will create inside the image, parent first, so cleanup can remove
 * them (only while still empty) and nothing the run made outlives it.
 */
export function missingMountPoints(ops: Op[], image: string | null): string[] {
  if (image === null) return [];
  const out: string[] = [];
  for (const o of ops) {
    if (o.kind !== "mount" && o.kind !== "mkdir" && o.kind !== "symlink") continue;
    const target = o.kind === "mount" ? o.args.target : o.args.path;
    if (target.startsWith("/dev/") || target.startsWith("/proc/") || target.startsWith("/sys/")) {
      continue;
    }
    const parts = target.split("/").filter((x) => x);
    for (let i = 1; i <= parts.length; i++) {
      const host = resolveInRoot(image, "/" + parts.slice(0, i).join("/"));
      try {
        Deno.lstatSync(host);
      } catch {
        if (!out.includes(host)) out.push(host);
      }
    }
  }
  return out;
}

export async function runCommand(argv: string[]): Promise<number> {
  const p = prepare(argv);
  const uid = Deno.uid() ?? 0;
  const sys = openLibc();
  let dir: string;
  try {
    dir = createRunDir(stateRoot(uid), p.id);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new MicroError(`a container named "${p.id}" is already running`, {
        hint: "choose another --name",
      });
    }
    throw new MicroError(
      `cannot create the state directory ${stateRoot(uid)}/${p.id}: ${(e as Error).message}`,
    );
  }
  const state: RunState = {
    id: p.id,
    pid: Deno.pid,
    startTime: processStartTime(Deno.pid),
    image: p.spec.root.path,
    createdDirs: missingMountPoints(p.ops, p.spec.root.path),
    created: new Date().toISOString(),
  };
  const removeOnExit = () => removeRun(dir, state);
  try {
    writeState(dir, state);
    Deno.mkdirSync(`${dir}/root`, { mode: 0o755 });
    const result = await execute(p.ops, {
      rootPath: `${dir}/root`,
      terminal: p.req.terminal,
      stdin: p.req.stdin || p.req.terminal,
      onChild(pid) {
        state.containerPid = pid;
        state.containerStartTime = processStartTime(pid);
        writeState(dir, state);
      },
    }, sys);
    if (p.req.json) {
      console.error(
        JSON.stringify({ id: p.id, exitCode: result.exitCode, signal: result.signal ?? null }),
      );
    }
    return result.exitCode;
  } finally {
    removeOnExit();
  }
}
