/** `micro run` and `micro plan`: the run pipeline is in core/run.ts. */
import { gcState } from "./_gc.ts";

function wantsHelp(argv: string[]): boolean {
  return argv.includes("--help") && argv.indexOf("--help") < (argv.indexOf("--") + 1 || Infinity);
}

export async function run(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) return await help();
  await gcState();
  const { runCommand } = await import("../core/run.ts");
  return await runCommand(argv);
}

export async function plan(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) return await help();
  await gcState();
  const { planCommand } = await import("../core/run.ts");
  return await planCommand(argv);
}

async function help(): Promise<number> {
  const { RUN_HELP } = await import("../core/cli.ts");
  console.log(RUN_HELP.trimEnd());
  return 0;
}
