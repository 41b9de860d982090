/** `micro stats`, `micro top`, `micro pause`, `micro unpause`: the logic is in core/stats/. */
export async function stats(argv: string[]): Promise<number> {
  return await (await import("../core/stats/mod.ts")).statsCommand(argv);
}

export async function top(argv: string[]): Promise<number> {
  return await (await import("../core/stats/mod.ts")).topCommand(argv);
}

export async function pause(argv: string[]): Promise<number> {
  return await (await import("../core/stats/mod.ts")).freezeCommand(argv, true);
}

export async function unpause(argv: string[]): Promise<number> {
  return await (await import("../core/stats/mod.ts")).freezeCommand(argv, false);
}
