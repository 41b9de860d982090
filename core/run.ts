/**
 * `micro run` and `micro plan`: request → profile → spec → checks → plan → engine.
 * Everything before the engine is shared, so `micro plan` shows exactly what a run does.
 */
import { parseRun, type Request } from "./cli.ts";
import { runChecks } from "./checks.ts";
import { execute, stoppedError } from "./engine/mod.ts";
import type { RunSignals } from "./signals.ts";
import { MicroError, MicroErrors } from "./errors.ts";
import { probeHost } from "./host.ts";
import { createMountPoints, resolveTargets } from "./engine/resolve.ts";
import { formatBytes } from "./cgroups/units.ts";
import type { Op } from "./ops.ts";
import { buildSpec, formatPlan, planRun } from "./plan.ts";
import { loadYamlFor, resolveProfile } from "./profile.ts";
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

/**
 * The image as an absolute path without links: the state records paths in it, and a later
 * gc may run from another directory.
 */
function absoluteImage(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`; // the image check reports it
  }
}

/** Everything up to the plan; no side effects (but loading the yaml library if needed). */
export async function prepare(argv: string[]): Promise<Prepared> {
  const req = parseRun(argv);
  await loadYamlFor(req.profiles);
  const { profile } = resolveProfile(req.profiles, req.layer, PLUGINS);
  // Without root, namespaces other than user need a user namespace of their own.
  const uid = Deno.uid() ?? 0;
  if (uid !== 0 && profile.sections.user) profile.sections.user.enabled = true;
  const spec = buildSpec(
    {
      image: req.image === null ? null : absoluteImage(req.image),
      args: req.args,
      terminal: req.terminal,
      stdin: req.stdin,
    },
    profile,
    PLUGINS,
  );
  const id = req.name ?? newId();
  const stateDir = `${stateRoot(uid)}/${id}`;
  const host = probeHost(spec, id, stateDir, () => openLibc().landlockCreateRuleset(0, 1));
  const problems = [
    ...runChecks(spec, host),
    ...PLUGINS.filter((p) => spec.micro.plugins.includes(p.name)).flatMap((p) =>
      p.check?.(spec, host) ?? []
    ),
  ];
  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) throw new MicroErrors(problems);
  const ops = planRun(spec, host, PLUGINS);
  return { req, spec, ops, id, stateDir };
}

export async function planCommand(argv: string[]): Promise<number> {
  const p = await prepare(argv);
  console.log(formatPlan(p.ops).trimEnd());
  return 0;
}

export async function runCommand(argv: string[], signals: RunSignals): Promise<number> {
  const p = await prepare(argv);
  // A signal that came during the checks stops the run before anything exists.
  if (signals.stopSignal) throw stoppedError(signals.stopSignal);
  const uid = Deno.uid() ?? 0;
  for (const o of p.ops) {
    if (o.kind === "skipped" && o.plugin === "cgroups" && p.spec.micro.cgroupLimits) {
      console.error(`micro: warning: ${o.args.reason}`);
    }
  }
  const sys = openLibc();
  let dir: string;
  try {
    dir = createRunDir(stateRoot(uid), p.id, uid);
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
    created: new Date().toISOString(),
  };
  const removeOnExit = () => removeRun(dir, state, () => sys);
  try {
    const resolved = resolveTargets(p.ops);
    if (p.spec.root.path !== null) {
      state.mountPoints = {
        image: p.spec.root.path,
        created: resolved.created,
        files: resolved.files,
      };
    }
    writeState(dir, state);
    createMountPoints(p.spec.root.path ?? "/", resolved.created, resolved.files, sys);
    Deno.mkdirSync(`${dir}/root`, { mode: 0o755 });
    const result = await execute(resolved.ops, {
      rootPath: `${dir}/root`,
      terminal: p.req.terminal,
      stdin: p.req.stdin,
      signals,
      onChild(pid) {
        state.containerPid = pid;
        state.containerStartTime = processStartTime(pid);
        writeState(dir, state);
      },
      onCgroups(all) {
        state.cgroups = all;
        writeState(dir, state);
      },
      onCleanupProblem: (m) => console.error(`micro: warning: cleanup: ${m}`),
    }, sys);
    const limit = result.oomKilled === undefined ? "" : formatBytes(result.oomKilled);
    // The container was killed when its init died of SIGKILL (or a shell init reports 137
    // for a command the killer took); a process the killer took while init went on is
    // reported, and the command's own exit code stands.
    const killed = result.oomKilled !== undefined &&
      (result.signal === 9 || result.exitCode === 137);
    const exitCode = killed ? 137 : result.exitCode;
    if (killed) console.error(`micro: container killed by the OOM killer (memory limit ${limit})`);
    else if (result.oomKilled !== undefined) {
      console.error(
        `micro: warning: the OOM killer killed a process in the container (memory limit ${limit})`,
      );
    }
    if (p.req.json) {
      console.error(JSON.stringify({
        id: p.id,
        exitCode,
        signal: result.signal ?? null,
        oomKilled: result.oomKilled !== undefined,
      }));
    }
    return exitCode;
  } finally {
    removeOnExit();
  }
}
