/**
 * micro's entry point. It only dispatches: each command's modules are imported when that
 * command runs, so `micro version` and `micro --help` stay cheap.
 */
import { EXIT_MICRO, MicroError, MicroErrors } from "./core/errors.ts";
import { RunSignals } from "./core/signals.ts";

const HELP = `micro: a Linux container runtime

usage:
  micro run [OPTIONS] [IMAGE] [--] COMMAND [ARG...]   run COMMAND in a new container
  micro plan [OPTIONS] [IMAGE] [--] COMMAND [ARG...]  print the ops a run would execute
  micro profile list                                  the built-in profiles
  micro profile show NAME|PATH...                     a profile, resolved
  micro version                                       micro, Deno and V8 versions

IMAGE is a root filesystem directory; without one, the root is a tmpfs holding the host's
/usr, /bin, /sbin, /lib* and /etc read-only. See "micro run --help" for the options.
`;

async function main(argv: string[]): Promise<number> {
  const cmd = argv[0];
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(HELP.trimEnd());
    return cmd === undefined ? EXIT_MICRO : 0;
  }
  if (cmd === "version" || cmd === "--version") {
    const { VERSION } = await import("./core/version.ts");
    console.log(`micro ${VERSION} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`);
    return 0;
  }
  // A run listens to signals before it creates anything (core/signals.ts says what each does).
  const signals = cmd === "run" ? new RunSignals() : undefined;
  await collectGarbage();
  if (cmd === "run" || cmd === "plan") {
    if (argv.includes("--help") && argv.indexOf("--help") < (argv.indexOf("--") + 1 || Infinity)) {
      const { RUN_HELP } = await import("./core/cli.ts");
      console.log(RUN_HELP.trimEnd());
      return 0;
    }
    const run = await import("./core/run.ts");
    return signals ? await run.runCommand(argv, signals) : run.planCommand(argv);
  }
  if (cmd === "profile") {
    const { listProfiles, loadYaml, showProfile } = await import("./core/profile.ts");
    const { PLUGINS } = await import("./plugins/mod.ts");
    if (argv[1] === "list") {
      const all = listProfiles();
      const w = Math.max(...all.map((p) => p.name.length));
      for (const p of all) console.log(`${p.name.padEnd(w)}  ${p.description}`);
      return 0;
    }
    if (argv[1] === "show" && argv.length > 2) {
      await loadYaml();
      console.log(showProfile(argv.slice(2), PLUGINS).trimEnd());
      return 0;
    }
    throw new MicroError(`usage: micro profile list | micro profile show NAME|PATH...`);
  }
  throw new MicroError(`unknown command "${cmd}"`, { hint: 'see "micro --help"' });
}

/** Every command first cleans what killed runs left in the state root (DESIGN.md §7). */
async function collectGarbage(): Promise<void> {
  const { gc, stateRoot } = await import("./core/state.ts");
  const { openLibc } = await import("./core/sys/libc.ts");
  const uid = Deno.uid() ?? 0;
  gc(stateRoot(uid), uid, (pid) => {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }, openLibc);
}

let code: number;
try {
  code = await main(Deno.args);
} catch (e) {
  if (e instanceof MicroErrors) {
    for (const x of e.errors) console.error(`micro: ${x.line()}`);
    code = EXIT_MICRO;
  } else if (e instanceof MicroError) {
    console.error(`micro: ${e.line()}`);
    code = e.exitCode;
  } else {
    console.error(`micro: internal error: ${e instanceof Error ? e.stack : e}`);
    code = EXIT_MICRO;
  }
}
Deno.exit(code);
