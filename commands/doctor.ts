/** `micro doctor`: the logic is in core/doctor/. */
export async function doctor(argv: string[]): Promise<number> {
  return await (await import("../core/doctor/mod.ts")).doctorCommand(argv);
}
