/**
 * `micro serve` (core/serve/server.ts), its internal `_serve-worker`, and the client side of
 * a served command (MICRO_SERVE), which main.ts calls before it loads the command.
 */
import { usageError } from "../core/errors.ts";

const USAGE = "usage: micro serve [--socket PATH]";

export async function serve(argv: string[]): Promise<number> {
  let socket: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") {
      console.log(`${USAGE}

Keeps micro processes warm for run, plan and exec, so that those commands skip loading
micro (about 30 ms a command). Commands use it when MICRO_SERVE is set: to 1 for the
default socket (<state root>/serve.sock: /run/micro as root), or to the socket's path.
Only the server's own user may connect. A command the server may not serve (a client in
other namespaces or cgroups, under another root, label or seccomp filter, with fewer
capabilities; no server; all workers busy) runs in the client's own process, as without
MICRO_SERVE; MICRO_TRACE=1 says why. Needs Linux 6.5 or later (SO_PEERPIDFD).`);
      return 0;
    }
    if (a === "--socket" && i + 1 < argv.length) socket = argv[++i];
    else if (a.startsWith("--socket=")) socket = a.slice(9);
    else throw usageError(`micro serve: unexpected "${a}"`, USAGE);
  }
  const { servePath } = await import("../core/serve/wire.ts");
  const path = servePath(socket ?? "1", Deno.uid() ?? 0);
  const { serve } = await import("../core/serve/server.ts");
  return await serve(path);
}

/** The internal worker: main.ts gives it its dispatch, errors printed as micro prints them. */
export function worker(dispatch: (argv: string[]) => Promise<number>) {
  return async (argv: string[]): Promise<number> => {
    const server = Number(argv[1]);
    if (!Number.isInteger(server) || server < 1) {
      throw usageError("micro _serve-worker SERVER_PID");
    }
    const { work } = await import("../core/serve/worker.ts");
    return await work(dispatch, server);
  };
}

/**
 * A served command: run by the server's worker, this process only its client. Null when it
 * is to run here (no server answers, or its worker may not serve this process).
 */
export async function client(
  value: string,
  argv: string[],
  warmed: boolean,
): Promise<number | null> {
  const [{ servePath }, { viaServer }] = await Promise.all([
    import("../core/serve/wire.ts"),
    import("../core/serve/client.ts"),
  ]);
  return await viaServer(servePath(value, Deno.uid() ?? 0), argv, undefined, warmed);
}
