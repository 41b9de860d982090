/** `micro _unpack-layer REQUEST`: internal, run by micro itself in a rootless user namespace. */
export async function unpackLayer(argv: string[]): Promise<number> {
  const { unpackLayerWorker } = await import("../core/image/rootless.ts");
  return await unpackLayerWorker(argv);
}

/** `micro _remove-tree PATH`: internal, a store tree removed as the owner of its files. */
export async function removeTree(argv: string[]): Promise<number> {
  const { removeTreeWorker } = await import("../core/image/rootless.ts");
  return await removeTreeWorker(argv);
}
