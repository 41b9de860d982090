/**
 * `micro doctor`: what this host offers micro, and which built-in profiles can run here.
 * Each fact is read the way micro itself reads it when it runs (the cgroup layout, the
 * Landlock ABI, the LSMs), and each profile goes through `micro plan`'s pipeline (host
 * probe, checks, plan) without starting anything.
 */
import { readLayout } from "../cgroups/layout.ts";
import { DEFAULT_CNI_PATH } from "../cni/facts.ts";
import { MicroError, MicroErrors } from "../errors.ts";
import { exists } from "../host.ts";
import { parseSubids } from "../idmap.ts";
import { listProfiles } from "../profile_show.ts";
import { openLibc } from "../sys/libc.ts";
import type { Sys } from "../sys/mod.ts";

export interface Fact {
  name: string;
  ok: boolean;
  detail: string;
}

const read = (p: string): string | undefined => {
  try {
    return Deno.readTextFileSync(p);
  } catch {
    return undefined;
  }
};

/** `6.1.0-18-amd64` → [6, 1]. */
export function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

const atLeast = (v: [number, number], major: number, minor: number) =>
  v[0] > major || (v[0] === major && v[1] >= minor);

function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir && exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

/** The caller's name in /etc/passwd (for /etc/subuid lines that name it). */
function userName(uid: number): string {
  for (const line of (read("/etc/passwd") ?? "").split("\n")) {
    const f = line.split(":");
    if (f.length > 3 && Number(f[2]) === uid) return f[0];
  }
  return String(uid);
}

/** The host facts, in the order `micro doctor` prints them. */
export function hostFacts(sys: Sys, uid = Deno.uid() ?? 0): Fact[] {
  const facts: Fact[] = [];
  const add = (name: string, ok: boolean, detail: string) => facts.push({ name, ok, detail });
  const release = Deno.osRelease();
  const kv = kernelVersion(release);
  add(
    "kernel",
    atLeast(kv, 5, 8),
    `${release} (${Deno.build.arch})${atLeast(kv, 5, 8) ? "" : ": micro needs 5.8+"}`,
  );

  const maxUserns = read("/proc/sys/user/max_user_namespaces")?.trim();
  const unpriv = read("/proc/sys/kernel/unprivileged_userns_clone")?.trim();
  const aaRestrict = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")?.trim();
  const usernsOk = maxUserns !== undefined && maxUserns !== "0" && unpriv !== "0" &&
    (uid === 0 || aaRestrict !== "1");
  add(
    "user namespaces",
    usernsOk,
    `max_user_namespaces=${maxUserns ?? "?"}` +
      (unpriv !== undefined ? `, unprivileged_userns_clone=${unpriv}` : "") +
      (aaRestrict !== undefined ? `, apparmor_restrict_unprivileged_userns=${aaRestrict}` : ""),
  );
  if (uid !== 0) {
    const name = userName(uid);
    const sub = (f: string) => parseSubids(read(f) ?? "", name, uid);
    const u = sub("/etc/subuid");
    const g = sub("/etc/subgid");
    const helpers = !!which("newuidmap") && !!which("newgidmap");
    const count = (r: { count: number }[]) => r.reduce((a, x) => a + x.count, 0);
    add(
      "subordinate ids",
      u.length > 0 && g.length > 0 && helpers,
      `${name}: ${count(u)} uids, ${count(g)} gids` +
        (helpers ? "" : "; newuidmap/newgidmap missing (Debian: uidmap)") +
        (u.length && g.length ? "" : "; without them only your own id is mapped"),
    );
  } else {
    const u = parseSubids(read("/etc/subuid") ?? "", "root", 0);
    add(
      "subordinate ids",
      true,
      `root maps ids itself${u.length ? ` (root has ${u.length} subuid ranges)` : ""}`,
    );
  }

  const layout = readLayout(uid);
  const ctrls = layout.mode === "v2" || (layout.mode === "hybrid" && !Object.keys(layout.v1).length)
    ? layout.v2?.controllers ?? []
    : Object.keys(layout.v1);
  add(
    "cgroups",
    layout.mode !== "none" && layout.writable,
    `${layout.mode}, controllers: ${ctrls.join(" ") || "none"}; ` +
      (layout.writable
        ? uid === 0 ? "micro creates its cgroups" : `delegated to you at ${layout.base || "/"}`
        : "not writable by you: no limits, stats or pause (systemd: Delegate=yes on your user slice)"),
  );

  const fs = read("/proc/filesystems") ?? "";
  const overlay = /\toverlay$/m.test(fs);
  add(
    "overlay",
    overlay,
    overlay
      ? `overlayfs${
        atLeast(kv, 5, 11) ? ", userxattr (rootless overlay, 5.11+)" : "; no userxattr (needs 5.11)"
      }`
      : "no overlayfs (modprobe overlay): store images cannot run",
  );

  const seccomp = /^Seccomp:/m.test(read("/proc/self/status") ?? "");
  const actions = read("/proc/sys/kernel/seccomp/actions_avail")?.trim();
  add(
    "seccomp",
    seccomp,
    seccomp ? `filter mode${actions ? `; actions: ${actions}` : ""}` : "not in this kernel",
  );

  const abi = sys.landlockCreateRuleset(0, 1);
  add(
    "landlock",
    abi > 0,
    abi > 0 ? `ABI ${abi}` : abi === -95 ? "disabled at boot (lsm=)" : "not in this kernel",
  );
  const apparmor = read("/sys/module/apparmor/parameters/enabled")?.trim() === "Y" &&
    exists("/sys/kernel/security/apparmor");
  add("apparmor", apparmor, apparmor ? "enabled" : "not enabled");
  const selinux = read("/sys/fs/selinux/enforce")?.trim();
  add(
    "selinux",
    selinux !== undefined,
    selinux === undefined ? "not enabled" : selinux === "1" ? "enforcing" : "permissive",
  );

  const pidfd = sys.pidfdOpen(Deno.pid, 0);
  if (pidfd >= 0) sys.close(pidfd);
  add(
    "pidfd",
    pidfd >= 0,
    pidfd >= 0
      ? "pidfd_open, setns with a pidfd (exec, --pid container:)"
      : "missing: micro exec cannot run",
  );
  add(
    "clone3",
    atLeast(kv, 5, 3),
    atLeast(kv, 5, 3) ? "in this kernel (5.3+)" : "not in this kernel",
  );

  const cni = ["bridge", "host-local", "loopback", "portmap", "firewall"];
  const found = DEFAULT_CNI_PATH.flatMap((d) =>
    cni.filter((p) => exists(`${d}/${p}`)).map((p) => `${d}/${p}`)
  );
  const missing = cni.filter((p) => !found.some((f) => f.endsWith(`/${p}`)));
  add(
    "cni plugins",
    missing.length === 0,
    missing.length
      ? `missing ${missing.join(", ")} in ${DEFAULT_CNI_PATH.join(":")}`
      : `in ${[...new Set(found.map((f) => f.slice(0, f.lastIndexOf("/"))))].join(", ")}`,
  );
  const pasta = which("pasta");
  const slirp = which("slirp4netns");
  add(
    "rootless network",
    !!(pasta || slirp),
    [pasta, slirp].filter((x) => x).join(", ") || "neither pasta nor slirp4netns on PATH",
  );
  return facts;
}

/** Whether a built-in profile passes micro plan's checks here; its problems when not. */
export async function profileVerdict(
  name: string,
): Promise<{ ok: boolean; problems: string[]; warnings: string[] }> {
  const { prepare } = await import("../prepare.ts");
  try {
    const p = await prepare(["plan", "--profile", name, "--", "/bin/true"]);
    const warnings = p.ops.flatMap((o) => o.kind === "skipped" ? [o.args.reason] : []);
    return { ok: true, problems: [], warnings };
  } catch (e) {
    if (e instanceof MicroErrors) {
      return {
        ok: false,
        problems: e.errors.map((x) => x.line()),
        warnings: [],
      };
    }
    if (e instanceof MicroError) return { ok: false, problems: [e.line()], warnings: [] };
    throw e;
  }
}

export async function doctorCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(
      "usage: micro doctor [--format json]\n\nWhat this host supports, and which built-in " +
        "profiles can run here. Exits 1 when the default profile cannot.",
    );
    return 0;
  }
  const json = argv.includes("--format=json") || argv[argv.indexOf("--format") + 1] === "json";
  const facts = hostFacts(openLibc());
  const profiles: { name: string; ok: boolean; problems: string[]; warnings: string[] }[] = [];
  for (const p of listProfiles()) {
    profiles.push({ name: p.name, ...(await profileVerdict(p.name)) });
  }
  if (json) {
    console.log(JSON.stringify({ host: facts, profiles }, null, 2));
  } else {
    const w = Math.max(...facts.map((f) => f.name.length));
    console.log("host:");
    for (const f of facts) {
      console.log(`  ${f.name.padEnd(w)}  ${f.ok ? "yes" : "no "}  ${f.detail}`);
    }
    console.log("profiles:");
    const pw = Math.max(...profiles.map((p) => p.name.length));
    for (const p of profiles) {
      console.log(`  ${p.name.padEnd(pw)}  ${p.ok ? "can run here" : "cannot run here"}`);
      for (const x of p.problems) console.log(`  ${"".padEnd(pw)}    ${x}`);
      for (const x of p.warnings) console.log(`  ${"".padEnd(pw)}    warning: ${x}`);
    }
  }
  return profiles.find((p) => p.name === "default")?.ok === false ? 1 : 0;
}
