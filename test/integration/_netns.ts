/**
 * The one helper of the network tests: a network namespace that plays the host, held by a
 * sleeping `unshare -n -m` with a private tmpfs on /run/micro, so its runs' state, leases and
 * use locks are seen only by the micro commands run there; micro runs in it through nsenter.
 * "The internet" is a second namespace joined by a veth pair made inside the first. Nothing
 * here touches the machine's own network; everything goes when the holders are killed.
 */
import { Background, MICRO, run, type RunResult, waitFor } from "./_helpers.ts";

const dec = new TextDecoder();

/**
 * The environment of micro in a namespace that plays the host: `auto` decides (the suite's
 * MICRO_DEFAULT_NETWORK=none is for the machine's own namespace).
 */
export const AS_A_HOST = { MICRO_DEFAULT_NETWORK: "" };

export class Netns {
  private constructor(
    readonly holder: Deno.ChildProcess,
    readonly path: string,
    readonly privateRun: boolean,
    /** MICRO_ROOT for micro in this namespace (its created networks, its store). */
    readonly root: string,
  ) {}

  static async create(privateRun = false, root = ""): Promise<Netns> {
    const args = privateRun
      ? [
        "-n",
        "-m",
        "sh",
        "-c",
        "mkdir -p /run/micro && mount -t tmpfs -o mode=0711 tmpfs " +
        "/run/micro && exec sleep 900",
      ]
      : ["-n", "sleep", "900"];
    const holder = new Deno.Command("unshare", {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const mine = Deno.readLinkSync("/proc/self/ns/net");
    const path = `/proc/${holder.pid}/ns/net`;
    const ready = await waitFor(() => {
      try {
        return Deno.readLinkSync(path) !== mine &&
          Deno.readTextFileSync(`/proc/${holder.pid}/comm`).trim() === "sleep";
      } catch {
        return false;
      }
    }, 5000);
    const ns = new Netns(holder, path, privateRun, root);
    if (!ready) {
      await ns.close();
      throw new Error("unshare -n did not make a network namespace");
    }
    await ns.sh("ip link set lo up");
    return ns;
  }

  get pid(): number {
    return this.holder.pid;
  }

  /** The state root as micro in this namespace sees it. */
  get stateRoot(): string {
    return this.privateRun ? `/proc/${this.pid}/root/run/micro` : "/run/micro";
  }

  private get enter(): string[] {
    return this.privateRun
      ? [`--net=${this.path}`, `--mount=/proc/${this.pid}/ns/mnt`]
      : [`--net=${this.path}`];
  }

  private env(extra: Record<string, string>): Record<string, string> {
    return { ...AS_A_HOST, ...(this.root ? { MICRO_ROOT: this.root } : {}), ...extra };
  }

  /** `sh -c script` in the namespace; throws unless it exits 0. */
  async sh(script: string): Promise<string> {
    const out = await new Deno.Command("nsenter", {
      args: [...this.enter, "sh", "-c", script],
      stdin: "null",
    }).output();
    if (!out.success) {
      throw new Error(`${script}: exit ${out.code}: ${dec.decode(out.stderr)}`);
    }
    return dec.decode(out.stdout);
  }

  micro(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<RunResult> {
    return run([...this.enter, MICRO, ...args], {
      cmd: "nsenter",
      env: this.env(env),
      timeoutMs,
    });
  }

  background(args: string[], env: Record<string, string> = {}): Background {
    const set = Object.entries(this.env(env)).map(([k, v]) => `${k}=${v}`);
    return new Background([...this.enter, "env", ...set, MICRO, ...args], { cmd: "nsenter" });
  }

  /**
   * A CNI network list `NAME.conflist` in the namespace's private /run/micro/net.d; returns
   * that directory as micro there sees it (for --cni-config-dir).
   */
  writeConflist(list: { name: string; cniVersion: string; plugins: unknown[] }): string {
    const dir = `/proc/${this.pid}/root/run/micro/net.d`;
    Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(`${dir}/${list.name}.conflist`, JSON.stringify(list));
    return "/run/micro/net.d";
  }

  async close(): Promise<void> {
    try {
      this.holder.kill("SIGKILL");
    } catch { /* gone */ }
    await this.holder.status;
  }
}

/**
 * A playing host (private /run/micro, MICRO_ROOT in a temp dir) with an uplink to "the
 * internet" (203.0.113.2, a documentation address); both go when `fn` ends, however.
 */
export async function withHosts(
  fn: (host: Netns, internet: Netns) => Promise<void>,
): Promise<void> {
  const root = Deno.makeTempDirSync({ prefix: "micro-net-root-" });
  Deno.chmodSync(root, 0o711);
  let host: Netns | null = null;
  let internet: Netns | null = null;
  try {
    host = await Netns.create(true, root);
    internet = await Netns.create();
    await host.sh(
      `ip link add up0 type veth peer name down0 netns ${internet.pid} && ` +
        "ip addr add 203.0.113.1/24 dev up0 && ip link set up0 up && " +
        "ip route add default via 203.0.113.2",
    );
    await internet.sh("ip addr add 203.0.113.2/24 dev down0 && ip link set down0 up");
    await fn(host, internet);
  } finally {
    await internet?.close();
    await host?.close();
    Deno.removeSync(root, { recursive: true });
  }
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
