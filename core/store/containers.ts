/**
 * A container's own directory in the store: the overlay's upper and work directories.
 */

/**
 * Removes a container's directory. The overlay leaves `work/work` with mode 0 (removable by
 * root; a rootless owner must make it searchable first). Nothing in it is followed.
 */
export function removeContainerDir(dir: string): string | undefined {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      Deno.removeSync(dir, { recursive: true });
      return undefined;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      if (attempt > 0 || !(e instanceof Deno.errors.PermissionDenied)) {
        return (e as Error).message;
      }
      try {
        const work = `${dir}/work/work`;
        if (Deno.lstatSync(work).isDirectory) Deno.chmodSync(work, 0o700);
      } catch { /* not there */ }
    }
  }
  return undefined;
}
