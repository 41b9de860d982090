/** `micro _unpack-layer REQUEST`: internal, run by micro itself in a rootless user namespace. */
export async function unpackLayer(argv: string[]): Promise<number> {
  const { unpackLayerWorker } = await import("../core/image/rootless.ts");
  return await unpackLayerWorker(argv);
}
