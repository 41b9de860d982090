/** `micro run` and `micro plan`: the run pipeline is in core/run.ts. */
import { gcState } from "./_gc.ts";
import { RunSignals } from "../core/signals.ts";
import { mark } from "../core/trace.ts";
import { parseRun } from "../core/cli.ts";
import { usageError } from "../core/errors.ts";
import { warmDone, warmUp } from "../core/cgroups/warm.ts";

function wantsHelp(argv: string[]): boolean {
  return argv.includes("--help") && argv.indexOf("--help") < (argv.indexOf("--") + 1 || Infinity);
}

export async function run(argv: string[]): Promise<number> {
  mark("load run command");
  // A run listens to signals before it creates anything (core/signals.ts says what each does).
  const signals = new RunSignals();
  mark("signals");
  if (wantsHelp(argv)) {
    signals.remove();
    return await help();
  }
  if (detaches(argv)) {
    signals.remove();
    return await (await import("./lifecycle.ts")).runDetached(argv);
  }
  try {
    // The v1 join's grace period, started now to be over by the join (core/cgroups/warm.ts).
    await warmUp();
    mark("attach warm-up");
    await gcState();
    mark("state gc");
    const { runCommand } = await import("../core/run.ts");
    mark("load run modules");
    return await runCommand(argv, signals);
  } finally {
    // A serve worker runs the next client's command in this process (core/serve/worker.ts).
    signals.remove();
    void warmDone();
  }
}

/**
 * Whether `micro run` is given -d (--detach): parsed in full, as the run would, so that the
 * answer is the parser's (an option's value that looks like -d is no -d).
 */
function detaches(argv: string[]): boolean {
  if (!argv.some((a) => a === "-d" || a === "--detach" || /^-[a-zA-Z]*d/.test(a))) return false;
  return !!parseRun(argv).detach;
}

export async function plan(argv: string[]): Promise<number> {
  mark("load run command");
  if (wantsHelp(argv)) return await help();
  // `micro plan --bundle DIR`: the ops `micro oci create` would run for that bundle.
  const b = argv.findIndex((a) => a === "--bundle" || a === "-b" || a.startsWith("--bundle="));
  if (b > 0) {
    const dir = argv[b].startsWith("--bundle=") ? argv[b].slice(9) : argv[b + 1];
    if (!dir) throw usageError('option "--bundle" needs a directory');
    const { planBundle } = await import("../core/oci/runtime.ts");
    const { formatPlan } = await import("../core/plan.ts");
    console.log(formatPlan(await planBundle(dir)).trimEnd());
    return 0;
  }
  await gcState();
  mark("state gc");
  const { planCommand } = await import("../core/prepare.ts");
  mark("load run modules");
  return await planCommand(argv);
}

async function help(): Promise<number> {
  const { RUN_HELP } = await import("../core/run_help.ts");
  console.log(RUN_HELP.trimEnd());
  return 0;
}
