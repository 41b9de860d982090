/**
 * (The bandwidth and rootless-network tests' copy of _netns.ts, kept apart at the merge: to be one.)
 * Network namespaces that play the host for network tests (the pattern of
 * network_test.ts): micro runs inside them with nsenter; "the internet" is a second
 * namespace joined by a veth pair made inside the first. Nothing touches this machine's
 * own network.
 */
import { Background, MICRO, run, type RunResult, STATE_ROOT, waitFor } from "./_helpers.ts";

const dec = new TextDecoder();

/** The environment of micro in a namespace that plays the host: `auto` decides. */
export const AS_A_HOST = { MICRO_DEFAULT_NETWORK: "" };

/** A network namespace held by a sleeping process; gone once it is killed. */
export class Netns {
  private constructor(
    readonly holder: Deno.ChildProcess,
    readonly path: string,
    readonly privateRun: boolean,
  ) {}

  /**
   * With `privateRun`, the namespace also gets a mount namespace of its own with a fresh
   * tmpfs on /run/micro: its runs' state and leases are seen only by the micro commands
   * run there, never by other micro processes on this machine (whose gc would take a
   * killed run's state first).
   */
  static async create(privateRun = false): Promise<Netns> {
    const args = privateRun
      ? [
        "-n",
        "-m",
        "sh",
        "-c",
        "mkdir -p /run/micro && mount -t tmpfs -o mode=0711 tmpfs " +
        "/run/micro && exec sleep 600",
      ]
      : ["-n", "sleep", "600"];
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
    const ns = new Netns(holder, path, privateRun);
    if (!ready) {
      await ns.close();
      throw new Error("unshare -n did not make a network namespace");
    }
    await ns.sh("ip link set lo up");
    return ns;
  }

  /** The state root as micro in this namespace sees it. */
  get stateRoot(): string {
    return this.privateRun ? `/proc/${this.pid}/root/run/micro` : STATE_ROOT;
  }

  /** nsenter's arguments for this namespace (and its mount namespace). */
  private get enter(): string[] {
    return this.privateRun
      ? [`--net=${this.path}`, `--mount=/proc/${this.pid}/ns/mnt`]
      : [`--net=${this.path}`];
  }

  get pid(): number {
    return this.holder.pid;
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

  /**
   * micro ARGS in the namespace, as on a real host: the default profile's network is
   * `auto` here (the suite's MICRO_DEFAULT_NETWORK=none is for the machine's own namespace).
   */
  micro(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
    return run([...this.enter, MICRO, ...args], {
      cmd: "nsenter",
      env: { ...AS_A_HOST, ...env },
      timeoutMs: 60_000,
    });
  }

  background(args: string[], env: Record<string, string> = {}): Background {
    const set = Object.entries({ ...AS_A_HOST, ...env }).map(([k, v]) => `${k}=${v}`);
    return new Background([...this.enter, "env", ...set, MICRO, ...args], {
      cmd: "nsenter",
    });
  }

  async close(): Promise<void> {
    try {
      this.holder.kill("SIGKILL");
    } catch { /* gone */ }
    await this.holder.status;
  }
}

/** A playing host with an uplink to "the internet" (203.0.113.2, a documentation address). */
export async function withHosts(
  fn: (host: Netns, internet: Netns) => Promise<void>,
): Promise<void> {
  const host = await Netns.create(true);
  let internet: Netns | null = null;
  try {
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
    await host.close();
  }
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
