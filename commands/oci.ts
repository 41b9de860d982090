/**
 * `micro oci VERB ...`: the OCI runtime command line, as runc and crun have it, for podman
 * (`--runtime`) and containerd (the runc shim's `BinaryName`, `ctr run --runc-binary`).
 * main.ts also routes runc-style invocations here (see `looksLikeRunc`).
 */
import { MicroError, usageError } from "../core/errors.ts";
import { warmDone, warmUp } from "../core/cgroups/warm.ts";

const HELP = `micro oci: micro as an OCI runtime (the runc command line)

usage: micro oci [GLOBAL OPTIONS] COMMAND [OPTIONS] ...
  create [--bundle DIR] [--pid-file F] [--preserve-fds N] [--no-pivot] ID
                                            set up the container; its process waits
  start ID                                  let a created container run its process
  run [--bundle DIR] [--pid-file F] [-d] ID create, start, wait, delete
  exec [OPTIONS] ID CMD... | --process F ID  run a process in the container (-g GIDS,
                                            --cgroup [CTRL:]PATH, --apparmor, --process-label)
  state ID                                  the state JSON of the runtime spec
  kill [--all] ID [SIGNAL]                  signal the container (default TERM)
  delete [--force] ID                       remove a stopped (--force: any) container
  list [--format table|json] [-q]           the containers
  ps [--format table|json] ID [PS ARGS]     the container's processes
  pause ID | resume ID                      freeze or thaw the container's cgroup
  update [-r FILE|-] [--memory N] [--cpu-quota N] [--pids-limit N] ... ID  live resources
  spec [--rootless] [--bundle DIR]          write a default config.json
  features                                  what this runtime supports (JSON)
global options: --root DIR (default /run/micro-oci as root), --log FILE,
  --log-format text|json, --debug, --systemd-cgroup (refused), --rootless BOOL`;

/** runc's global flags; the ones taking a value. */
const GLOBAL_VALUE = ["--root", "--log", "--log-format", "--criu", "--rootless"];
const GLOBAL_BOOL = ["--debug", "--systemd-cgroup"];
export const RUNC_GLOBALS = [...GLOBAL_VALUE, ...GLOBAL_BOOL];

interface Globals {
  root?: string;
  log?: string;
  logFormat: "text" | "json";
  debug: boolean;
}

interface Parsed {
  flags: Record<string, string | boolean>;
  lists: Record<string, string[]>;
  args: string[];
}

/**
 * Verb flags: `--x V`, `--x=V`, short aliases; booleans named in `bools`. Unknown flags
 * are an error naming them.
 */
function parseVerb(
  argv: string[],
  values: Record<string, string>,
  bools: Record<string, string>,
  stopAtArg = false,
): Parsed {
  const flags: Record<string, string | boolean> = {};
  const lists: Record<string, string[]> = {};
  const args: string[] = [];
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === "--") {
      args.push(...argv.slice(k + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      // The first argument ends the options (exec ID CMD -x: -x is the command's).
      args.push(...(stopAtArg ? argv.slice(k) : [a]));
      if (stopAtArg) break;
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (Object.hasOwn(values, name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++k];
      if (v === undefined) throw usageError(`option "${name}" needs a value`);
      const key = values[name];
      // A repeatable option (`env[]`) collects every value.
      if (key.endsWith("[]")) lists[key] = [...(lists[key] ?? []), v];
      else flags[key] = v;
    } else if (Object.hasOwn(bools, name)) {
      flags[bools[name]] = eq > 0 ? a.slice(eq + 1) !== "false" : true;
    } else {
      throw usageError(`unknown option "${name}"`, 'see "micro oci --help"');
    }
  }
  return { flags, lists, args };
}

function parseGlobals(argv: string[]): { g: Globals; rest: string[] } {
  const g: Globals = { logFormat: "text", debug: false };
  let k = 0;
  for (; k < argv.length; k++) {
    const a = argv[k];
    if (!a.startsWith("-")) break;
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (GLOBAL_VALUE.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++k];
      if (v === undefined) throw usageError(`option "${name}" needs a value`);
      if (name === "--root") g.root = v;
      if (name === "--log") g.log = v;
      if (name === "--log-format") {
        if (v !== "text" && v !== "json") throw usageError(`--log-format: "${v}" (text or json)`);
        g.logFormat = v;
      }
    } else if (name === "--debug") g.debug = true;
    else if (name === "--systemd-cgroup") {
      // systemd's own marker that it is the running init (sd_booted()).
      let booted = false;
      try {
        booted = Deno.lstatSync("/run/systemd/system").isDirectory;
      } catch {
        // not booted with systemd
      }
      const why = booted
        ? "micro manages cgroupfs itself, not through systemd"
        : "there is no systemd on this host (no /run/systemd/system), and micro manages cgroupfs itself";
      throw new MicroError(`--systemd-cgroup: ${why}`, {
        hint: 'configure the caller for cgroupfs (podman: cgroup_manager = "cgroupfs" in ' +
          "containers.conf; containerd: SystemdCgroup = false)",
      });
    } else if (a === "--help" || a === "-h") return { g, rest: ["help"] };
    else if (a === "--version" || a === "-v") return { g, rest: ["--version"] };
    else throw usageError(`unknown global option "${name}"`, 'see "micro oci --help"');
  }
  return { g, rest: argv.slice(k) };
}

/**
 * Errors go to stderr as always, and to `--log` (where podman and containerd read them) as
 * runc writes them: a line of text or of JSON `{"level":"error","msg":...,"time":...}`.
 */
function logTo(g: Globals, level: string, msg: string): void {
  if (!g.log) return;
  const line = g.logFormat === "json"
    ? JSON.stringify({ level, msg, time: new Date().toISOString() })
    : `time="${new Date().toISOString()}" level=${level} msg=${JSON.stringify(msg)}`;
  try {
    Deno.writeTextFileSync(g.log, line + "\n", { append: true, create: true });
  } catch {
    // the log is best effort; stderr has the message too
  }
}

/** `--preserve-fds N`: a whole number of fds (runc's limit is the fd table's). */
function fdCount(v: string | boolean | undefined): number {
  if (v === undefined) return 0;
  if (typeof v !== "string" || !/^[0-9]+$/.test(v) || Number(v) > 990) {
    throw usageError(
      `--preserve-fds: "${v}" (a number of fds, 0 to 990: micro keeps its own at 1000 and up)`,
    );
  }
  return Number(v);
}

function one(args: string[], verb: string): string {
  if (args.length !== 1) throw usageError(`${verb} takes exactly one container id`);
  return args[0];
}

/** `micro oci ...` (argv[0] is "oci"), or a runc-style invocation routed here by main.ts. */
export async function oci(argv: string[]): Promise<number> {
  const { g, rest } = parseGlobals(argv[0] === "oci" ? argv.slice(1) : argv);
  try {
    return await verb(g, rest);
  } catch (e) {
    if (e instanceof MicroError) logTo(g, "error", e.line());
    throw e;
  }
}

async function verb(g: Globals, argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const uid = Deno.uid() ?? 0;
  const { defaultOciRoot } = await import("../core/oci/state.ts");
  const root = g.root ?? defaultOciRoot(uid);
  switch (cmd) {
    case undefined:
    case "help":
      console.log(HELP);
      return cmd === undefined ? 125 : 0;
    case "--version": {
      const { VERSION } = await import("../core/version.ts");
      console.log(`micro version ${VERSION}\ncommit: micro\nspec: 1.2.0`);
      return 0;
    }
    case "create":
    case "run": {
      const { flags, args } = parseVerb(
        rest,
        {
          "--bundle": "bundle",
          "-b": "bundle",
          "--pid-file": "pidFile",
          "--console-socket": "consoleSocket",
          "--preserve-fds": "preserveFds",
        },
        {
          "--no-pivot": "noPivot",
          "--no-new-keyring": "noNewKeyring",
          "--detach": "detach",
          "-d": "detach",
          "--keep": "keep",
          "--no-subreaper": "noSubreaper",
        },
      );
      const id = one(args, cmd);
      const o = {
        root,
        id,
        bundle: (flags.bundle as string | undefined) ?? ".",
        pidFile: flags.pidFile as string | undefined,
        consoleSocket: flags.consoleSocket as string | undefined,
        noNewKeyring: flags.noNewKeyring === true,
        preserveFds: fdCount(flags.preserveFds),
        noPivot: flags.noPivot === true,
      };
      // Its init joins its cgroups: on v1, their wait started now (core/cgroups/warm.ts),
      // under the runtime's loading.
      await warmUp();
      try {
        const rt = await import("../core/oci/runtime.ts");
        if (cmd === "create") {
          await rt.create(o);
          return 0;
        }
        return await rt.run(o, flags.detach === true, undefined, flags.keep === true);
      } finally {
        void warmDone();
      }
    }
    case "start": {
      const { args } = parseVerb(rest, {}, {});
      const rt = await import("../core/oci/runtime.ts");
      await rt.start(root, one(args, cmd));
      return 0;
    }
    case "state": {
      const { args } = parseVerb(rest, {}, {});
      const st = await import("../core/oci/state.ts");
      const { dir, state } = st.loadOciState(root, one(args, cmd));
      console.log(JSON.stringify(st.specState(dir, state), null, 2));
      return 0;
    }
    case "kill": {
      const { flags, args } = parseVerb(rest, {}, { "--all": "all", "-a": "all" });
      if (args.length < 1 || args.length > 2) throw usageError("usage: kill [--all] ID [SIGNAL]");
      const rt = await import("../core/oci/runtime.ts");
      rt.kill(root, args[0], rt.signalNumber(args[1]), flags.all === true);
      return 0;
    }
    case "delete": {
      const { flags, args } = parseVerb(rest, {}, { "--force": "force", "-f": "force" });
      const rt = await import("../core/oci/runtime.ts");
      await rt.remove(root, one(args, cmd), flags.force === true);
      return 0;
    }
    case "list": {
      const { flags } = parseVerb(rest, { "--format": "format", "-f": "format" }, {
        "--quiet": "quiet",
        "-q": "quiet",
      });
      return await list(root, (flags.format as string | undefined) ?? "table", !!flags.quiet);
    }
    case "spec": {
      const { flags } = parseVerb(rest, { "--bundle": "bundle", "-b": "bundle" }, {
        "--rootless": "rootless",
      });
      const { defaultConfig } = await import("../core/oci/default.ts");
      const path = `${(flags.bundle as string | undefined) ?? "."}/config.json`;
      try {
        Deno.writeTextFileSync(
          path,
          JSON.stringify(defaultConfig(flags.rootless === true), null, "\t") + "\n",
          { createNew: true },
        );
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists) {
          throw new MicroError(`${path} exists`, { hint: "remove it first" });
        }
        throw e;
      }
      return 0;
    }
    case "features": {
      const { features } = await import("../core/oci/default.ts");
      console.log(JSON.stringify(features(), null, 2));
      return 0;
    }
    case "exec": {
      const { flags, lists, args } = parseVerb(
        rest,
        {
          "--process": "process",
          "-p": "process",
          "--cwd": "cwd",
          "--env": "env[]",
          "-e": "env[]",
          "--user": "user",
          "-u": "user",
          "--cap": "cap[]",
          "-c": "cap[]",
          "--pid-file": "pidFile",
          "--console-socket": "consoleSocket",
          "--preserve-fds": "preserveFds",
          "--apparmor": "apparmor",
          "--process-label": "processLabel",
          "--additional-gids": "gids[]",
          "-g": "gids[]",
          "--cgroup": "cgroup[]",
        },
        {
          "--tty": "tty",
          "-t": "tty",
          "--detach": "detach",
          "-d": "detach",
          "--no-new-privs": "noNewPrivs",
          "--ignore-paused": "ignorePaused",
        },
        true,
      );
      const [id, ...cmd] = args;
      const preserveFds = fdCount(flags.preserveFds);
      // Its process joins the container's cgroups: on v1, their wait started now.
      await warmUp();
      try {
        const { exec } = await import("../core/oci/exec.ts");
        return await exec({
          root,
          id,
          process: flags.process as string | undefined,
          args: cmd,
          tty: flags.tty === true,
          cwd: flags.cwd as string | undefined,
          env: lists["env[]"] ?? [],
          user: flags.user as string | undefined,
          caps: lists["cap[]"] ?? [],
          noNewPrivs: flags.noNewPrivs === true,
          detach: flags.detach === true,
          pidFile: flags.pidFile as string | undefined,
          consoleSocket: flags.consoleSocket as string | undefined,
          apparmor: flags.apparmor as string | undefined,
          processLabel: flags.processLabel as string | undefined,
          gids: (lists["gids[]"] ?? []).flatMap((g) => g.split(",")),
          cgroups: lists["cgroup[]"] ?? [],
          preserveFds,
          ignorePaused: flags.ignorePaused === true,
        });
      } finally {
        void warmDone();
      }
    }
    case "ps": {
      // runc's ps: the pids of the container's cgroup as JSON, or the host's ps(1) output
      // (ARGS, default -ef) cut to them.
      const { flags, args } = parseVerb(rest, { "--format": "format", "-f": "format" }, {}, true);
      const [id, ...psArgs] = args;
      const st = await import("../core/oci/state.ts");
      const rt = await import("../core/oci/runtime.ts");
      const { dir, state } = st.loadOciState(root, one(id ? [id] : [], "ps"));
      const status = st.statusOf(dir, state);
      if (status !== "created" && status !== "running") {
        throw new MicroError(`container "${id}" is ${status}: it has no processes`);
      }
      const pids = rt.cgroupPids(state);
      const format = (flags.format as string | undefined) ?? "table";
      if (format === "json") {
        console.log(JSON.stringify(pids));
        return 0;
      }
      if (format !== "table") throw usageError(`--format: "${format}" (table or json)`);
      const out = await new Deno.Command("ps", {
        args: psArgs.length ? psArgs : ["-ef"],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      const lines = new TextDecoder().decode(out.stdout).split("\n");
      const col = lines[0].trim().split(/\s+/).indexOf("PID");
      if (col < 0) throw new MicroError("ps: the output of ps(1) has no PID column");
      console.log(lines[0]);
      for (const l of lines.slice(1)) {
        if (pids.includes(Number(l.trim().split(/\s+/)[col]))) console.log(l);
      }
      return 0;
    }
    case "pause":
    case "resume": {
      const { args } = parseVerb(rest, {}, {});
      const id = one(args, cmd);
      const st = await import("../core/oci/state.ts");
      const rt = await import("../core/oci/runtime.ts");
      const { openLibc } = await import("../core/sys/libc.ts");
      await rt.locked(root, id, openLibc(), async () => {
        const { dir, state } = st.loadOciState(root, id);
        const status = st.statusOf(dir, state);
        if (status !== "running" && status !== "paused") {
          throw new MicroError(`${cmd} ${id}: the container is ${status}, not running or paused`);
        }
        const { setFrozen } = await import("../core/stats/mod.ts");
        await setFrozen(st.ownCgroups(state), `container "${id}"`, cmd === "pause");
      });
      return 0;
    }
    case "update": {
      const up = await import("../core/oci/update.ts");
      const values: Record<string, string> = { "-r": "file", "--resources": "file" };
      for (const f of Object.keys(up.UPDATE_FLAGS)) values[f] = f;
      const { flags, args } = parseVerb(rest, values, {});
      const id = one(args, cmd);
      const { file, ...set } = flags as Record<string, string>;
      let json: string | undefined;
      if (file !== undefined) {
        json = file === "-"
          ? await new Response(Deno.stdin.readable).text()
          : Deno.readTextFileSync(file);
      } else if (!Object.keys(set).length) {
        // runc reads the JSON from stdin when no flag is given.
        json = await new Response(Deno.stdin.readable).text();
      }
      const resources = up.updateResources(json, set);
      const rt = await import("../core/oci/runtime.ts");
      const { openLibc } = await import("../core/sys/libc.ts");
      await rt.locked(root, id, openLibc(), () => up.update(root, id, resources));
      return 0;
    }
    case "checkpoint":
    case "restore":
      throw new MicroError(`oci ${cmd}: micro does not checkpoint containers (runc drives CRIU)`, {
        hint: 'use runc for checkpoints; see the README\'s section "micro as an OCI runtime"',
      });
    case "events":
      throw new MicroError("oci events: micro does not stream runc's events", {
        hint: "read the container's cgroup files (its linux.cgroupsPath under /sys/fs/cgroup)",
      });
    default:
      throw usageError(`unknown OCI command "${cmd}"`, 'see "micro oci --help"');
  }
}

async function list(root: string, format: string, quiet: boolean): Promise<number> {
  const rt = await import("../core/oci/runtime.ts");
  const st = await import("../core/oci/state.ts");
  const all = rt.listAll(root).map(({ dir, state }) => st.specState(dir, state));
  if (quiet) {
    for (const s of all) console.log(s.id);
    return 0;
  }
  if (format === "json") {
    console.log(JSON.stringify(all));
    return 0;
  }
  if (format !== "table") throw usageError(`--format: "${format}" (table or json)`);
  const rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]];
  for (const s of all) {
    rows.push([s.id, s.pid, s.status, s.bundle, s.created, s.owner].map(String));
  }
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  for (const r of rows) {
    console.log(r.map((c, k) => k < r.length - 1 ? c.padEnd(widths[k] + 3) : c).join(""));
  }
  return 0;
}
