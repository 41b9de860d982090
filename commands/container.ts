/**
 * `micro ps`, `micro rm` and `micro diff`: the containers runs keep without `--rm`
 * (core/store/containers.ts), shown and removed as Docker does.
 */
import { MicroError } from "../core/errors.ts";
import { gcState } from "./_gc.ts";

/**
 * Splits `-aq`-style flags from operands; `known` maps each short and long form to a key.
 * `--root DIR` (the store, as `micro run --root`) is taken by every command here.
 */
function parseFlags(
  argv: string[],
  known: Record<string, string>,
  usage: string,
): { flags: Set<string>; rest: string[]; root?: string } {
  const flags = new Set<string>();
  const rest: string[] = [];
  let root: string | undefined;
  let i = 1;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (a === "--root" || a.startsWith("--root=")) {
      root = a === "--root" ? argv[++i] : a.slice(7);
      if (!root) throw new MicroError(`option "--root" needs a directory`, { hint: usage });
      if (!root.startsWith("/")) root = `${Deno.cwd()}/${root}`;
      continue;
    }
    if (!a.startsWith("-") || a === "-") {
      rest.push(a);
      continue;
    }
    const forms = a.startsWith("--") ? [a] : [...a.slice(1)].map((c) => `-${c}`);
    for (const f of forms) {
      if (f === "--help" || f === "-h") throw new HelpRequest(usage);
      const key = known[f];
      if (!key) throw new MicroError(`unknown option "${f}"`, { hint: usage });
      flags.add(key);
    }
  }
  rest.push(...argv.slice(i));
  return { flags, rest, root };
}

class HelpRequest extends Error {}

async function withHelp(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof HelpRequest)) throw e;
    console.log(e.message);
    return 0;
  }
}

async function store(root?: string) {
  const { storeRoot } = await import("../core/store/paths.ts");
  const { stateRoot } = await import("../core/stateroot.ts");
  const uid = Deno.uid() ?? 0;
  return { root: root ?? storeRoot(uid), state: stateRoot(uid), uid };
}

const PS_USAGE = "usage: micro ps [-a|--all] [-q|--quiet] [--no-trunc] " +
  "[-f|--filter label=KEY[=VALUE]] [--format table|json] [--root DIR]";

/**
 * Takes `-f F`, `--filter F`, `--filter=F` out of argv (repeatable): the filters given; and
 * `--format json|table`.
 */
function takeFilters(
  argv: string[],
): { argv: string[]; filters: string[]; format?: string } {
  const out: string[] = [];
  const filters: string[] = [];
  let format: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (a === "-f" || a === "--filter") {
      if (i + 1 >= argv.length) {
        throw new MicroError(`option "${a}" needs a filter`, { hint: PS_USAGE });
      }
      filters.push(argv[++i]);
    } else if (a.startsWith("--filter=")) filters.push(a.slice(9));
    else if (a === "--format" || a.startsWith("--format=")) {
      format = a === "--format" ? argv[++i] : a.slice(9);
      if (format !== "json" && format !== "table") {
        throw new MicroError(`option "--format": "${format ?? ""}" is not json or table`, {
          hint: PS_USAGE,
        });
      }
    } else out.push(a);
  }
  return { argv: out, filters, format };
}

/** `micro ps`: running containers; `-a` every kept one too. */
export function ps(args: string[]): Promise<number> {
  return withHelp(async () => {
    const { argv, filters, format } = takeFilters(args);
    const { labelFilter } = await import("../core/store/ps.ts");
    const matches = filters.map((f) => labelFilter(f));
    const { flags, rest, root } = parseFlags(argv, {
      "-a": "all",
      "--all": "all",
      "-q": "quiet",
      "--quiet": "quiet",
      "--no-trunc": "noTrunc",
    }, PS_USAGE);
    if (rest.length) {
      throw new MicroError(`ps takes no arguments: "${rest[0]}"`, { hint: PS_USAGE });
    }
    await gcState();
    const { listContainers } = await import("../core/store/containers.ts");
    const { statusOf } = await import("../core/store/live.ts");
    const { formatPs } = await import("../core/store/ps.ts");
    const s = await store(root);
    const rows = listContainers(s.root).map((rec) => ({ rec, status: statusOf(rec, s.state) }))
      .filter((r) => flags.has("all") || r.status.state === "running")
      .filter((r) => matches.every((m) => m(r.rec)));
    if (format === "json" && !flags.has("quiet")) {
      const { formatPsJson } = await import("../core/store/ps.ts");
      const json = formatPsJson(rows, { trunc: !flags.has("noTrunc"), now: Date.now() });
      if (json) console.log(json.trimEnd());
      return 0;
    }
    const text = formatPs(rows, {
      quiet: flags.has("quiet"),
      trunc: !flags.has("noTrunc"),
      now: Date.now(),
    });
    if (text) console.log(text.trimEnd());
    return 0;
  });
}

const RM_USAGE = "usage: micro rm [-f|--force] [--root DIR] NAME|ID...";

/** `micro rm`: removes exited containers; `-f` stops a running one first (SIGKILL). */
export function rm(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { flags, rest, root } = parseFlags(
      argv,
      { "-f": "force", "--force": "force" },
      RM_USAGE,
    );
    if (!rest.length) throw new MicroError("rm needs at least one container", { hint: RM_USAGE });
    await gcState();
    const { removeContainerDir } = await import("../core/store/containers.ts");
    const { openLibc } = await import("../core/sys/libc.ts");
    const { locked } = await import("./lifecycle.ts");
    const { containerDir } = await import("../core/store/paths.ts");
    const { killContainer, statusOf } = await import("../core/store/live.ts");
    const s = await store(root);
    let failed = false;
    for (const ref of rest) {
      try {
        // Under the container's lock: a start or stop racing it comes before or after.
        await locked(s.root, ref, async (rec) => {
          const status = statusOf(rec, s.state);
          const live = status.state === "running" ||
            (status.state === "created" && status.exitCode === null);
          if (live && !flags.has("force")) {
            throw new MicroError(`container ${ref} is ${status.state}`, {
              hint: "stop it first, or remove it with micro rm -f",
            });
          }
          const { liveRun } = await import("../core/store/live.ts");
          const run = live ? liveRun(rec, s.state) : null;
          if (run?.detached) {
            // The supervisor's: it kills it, records the end and cleans up.
            const { ask } = await import("../core/supervisor/client.ts");
            const r = await ask(s.state, s.uid, {
              op: "stop",
              runId: rec.runId,
              signal: 9,
              timeout: 10,
            });
            if (!r.ok) throw new MicroError(r.error ?? `rm: container ${ref}: not stopped`);
          } else {
            if (live) {
              const { killRecorded } = await import("../core/state.ts");
              await killContainer(rec, s.state, s.uid, killRecorded);
              await gcState(); // what a micro killed in turn left
            }
            // Exited, but perhaps in its restart policy's back-off, or its runner already
            // starting it (it read the record): cancelled and waited for, else the container
            // comes back once removed.
            const { askRunning } = await import("../core/supervisor/client.ts");
            await askRunning(s.state, { op: "stop", runId: rec.runId, signal: 9, timeout: 0 });
          }
          const why = removeContainerDir(containerDir(s.root, rec.id), openLibc());
          if (why) throw new MicroError(`rm: container ${ref}: ${why}`);
          console.log(ref);
        });
      } catch (e) {
        if (!(e instanceof MicroError)) throw e;
        console.error(`micro: ${e.line()}`);
        failed = true;
      }
    }
    return failed ? 125 : 0;
  });
}

const DIFF_USAGE = "usage: micro diff [--root DIR] NAME|ID";

/** `micro diff`: the container's changes to its image, as `docker diff`. */
export function diff(argv: string[]): Promise<number> {
  return withHelp(async () => {
    const { rest, root } = parseFlags(argv, {}, DIFF_USAGE);
    if (rest.length !== 1) throw new MicroError("diff needs one container", { hint: DIFF_USAGE });
    await gcState();
    const { resolveContainer } = await import("../core/store/containers.ts");
    const { containerDiff } = await import("../core/store/diff.ts");
    const { openLibc } = await import("../core/sys/libc.ts");
    const s = await store(root);
    const rec = resolveContainer(s.root, rest[0]);
    const out = containerDiff(s.root, rec, openLibc());
    if (out) await Deno.stdout.write(new TextEncoder().encode(out));
    return 0;
  });
}
