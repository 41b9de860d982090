/**
 * Where micro keeps what outlives a run: images, layers and containers (DESIGN.md §10).
 * As root `/var/lib/micro`; rootless `$XDG_DATA_HOME/micro`, else `~/.local/share/micro`;
 * `MICRO_ROOT` overrides both.
 */
export function storeRoot(uid: number): string {
  const env = Deno.env.get("MICRO_ROOT");
  if (env) return env.replace(/\/+$/, "") || "/";
  if (uid === 0) return "/var/lib/micro";
  const xdg = Deno.env.get("XDG_DATA_HOME");
  if (xdg) return `${xdg}/micro`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.local/share/micro` : `/tmp/micro-data-${uid}`;
}

/** A container's own directory: its overlay's upper and work directories. */
export function containerDir(root: string, id: string): string {
  return `${root}/containers/${id}`;
}
