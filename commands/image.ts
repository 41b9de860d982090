/**
 * `micro pull`, `micro image ls|rm|inspect|prune|import|export`, and Docker's aliases
 * `micro images` and `micro rmi`. The store is `--root DIR`, else MICRO_ROOT, else the
 * user's (core/store/paths.ts).
 */
import { MicroError } from "../core/errors.ts";

export const PULL_HELP = `usage: micro pull [OPTIONS] REFERENCE

Pull an image from its registry into the image store (alpine, alpine:3.20,
registry.example:5000/team/app@sha256:...).

Options:
      --platform OS/ARCH  the platform to take from a multi-platform image (default: this host's)
      --tls-verify=false  accept any certificate and plain http
  -q, --quiet             print only the image's name
      --root DIR          the image store (default: $MICRO_ROOT, /var/lib/micro as root)
`;

export const IMAGE_HELP = `usage: micro image COMMAND

Commands:
  ls [-q] [--digests]          list the images (alias: micro images)
  rm [-f] IMAGE...             remove images by name or id (alias: micro rmi)
  inspect IMAGE...             print images' records as JSON
  prune [-a]                   remove images without a name (-a: every unused image),
                               unused layers and blobs, and what killed pulls left
  import FILE|DIR [NAME[:TAG]] import an OCI layout, OCI archive or docker save tarball
  export IMAGE FILE            write an image as an OCI archive

Every command takes --root DIR (default: $MICRO_ROOT, /var/lib/micro as root).
`;

interface Parsed {
  flags: Map<string, string>;
  args: string[];
}

/**
 * Options before and among the arguments: `--name value`, `--name=value`, `-x`; `known`
 * maps each option to whether it takes a value. `--` ends the options.
 */
function parseArgs(
  argv: string[],
  known: Record<string, "flag" | "value">,
  aliases: Record<string, string>,
  usage: string,
): Parsed {
  const flags = new Map<string, string>();
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      args.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const raw = eq < 0 ? a : a.slice(0, eq);
    const name = aliases[raw] ?? raw.replace(/^--?/, "");
    const kind = known[name];
    if (!kind) throw new MicroError(`unknown option "${raw}"`, { hint: usage });
    if (kind === "flag") {
      const v = eq < 0 ? "true" : a.slice(eq + 1);
      if (v !== "true" && v !== "false") {
        throw new MicroError(`option "${raw}" takes true or false, got "${v}"`);
      }
      flags.set(name, v);
    } else {
      if (eq >= 0) flags.set(name, a.slice(eq + 1));
      else if (i + 1 < argv.length) flags.set(name, argv[++i]);
      else throw new MicroError(`option "${raw}" needs a value`, { hint: usage });
    }
  }
  return { flags, args };
}

async function storeRootOf(flags: Map<string, string>): Promise<string> {
  const given = flags.get("root");
  if (given !== undefined) {
    if (given === "") throw new MicroError(`option "--root" needs a directory`);
    return given.startsWith("/") ? given : `${Deno.cwd()}/${given}`;
  }
  const { storeRoot } = await import("../core/store/paths.ts");
  return storeRoot(Deno.uid() ?? 0);
}

const warn = (m: string) => console.error(`micro: warning: ${m}`);

/** `micro pull`. */
export async function pull(argv: string[]): Promise<number> {
  const usage = 'see "micro pull --help"';
  const { flags, args } = parseArgs(
    argv.slice(1),
    { platform: "value", "tls-verify": "flag", quiet: "flag", root: "value", help: "flag" },
    { "-q": "quiet" },
    usage,
  );
  if (flags.get("help") === "true") {
    console.log(PULL_HELP.trimEnd());
    return 0;
  }
  if (args.length !== 1) throw new MicroError("usage: micro pull [OPTIONS] REFERENCE");
  const root = await storeRootOf(flags);
  const { parseReference, familiarReference } = await import("../core/image/reference.ts");
  const { findImage, storeName } = await import("../core/store/images.ts");
  const { pullToStore } = await import("../core/store/pull.ts");
  const { openLibc } = await import("../core/sys/libc.ts");
  const ref = parseReference(args[0]);
  const name = storeName(args[0]);
  const quiet = flags.get("quiet") === "true";
  const before = await findImage(root, name).catch(() => null);
  const image = await pullToStore(root, args[0], {
    sys: openLibc(),
    platform: flags.get("platform"),
    tlsVerify: flags.get("tls-verify") !== "false",
    progress: !quiet,
    warn,
  });
  if (quiet) {
    console.log(name);
    return 0;
  }
  const familiar = familiarReference(ref);
  console.log(`Digest: ${ref.digest ?? image.indexDigest ?? image.manifestDigest}`);
  console.log(
    before?.id === image.id
      ? `Status: Image is up to date for ${familiar}`
      : `Status: Downloaded newer image for ${familiar}`,
  );
  console.log(name);
  return 0;
}

/** `micro images` (= `micro image ls`). */
export async function images(argv: string[]): Promise<number> {
  return await image(["image", "ls", ...argv.slice(1)]);
}

/** `micro rmi` (= `micro image rm`). */
export async function rmi(argv: string[]): Promise<number> {
  return await image(["image", "rm", ...argv.slice(1)]);
}

/** `micro image COMMAND`. */
export async function image(argv: string[]): Promise<number> {
  // Options may come before the subcommand too (`micro image --root DIR ls`).
  let at = 1;
  while (
    at < argv.length && argv[at].startsWith("-") && argv[at] !== "--help" && argv[at] !== "-h"
  ) {
    at += argv[at] === "--root" ? 2 : 1;
  }
  const sub = argv[at];
  const rest = [...argv.slice(1, at), ...argv.slice(at + 1)];
  switch (sub) {
    case "ls":
    case "list":
      return await ls(rest);
    case "rm":
    case "remove":
      return await rm(rest);
    case "inspect":
      return await inspect(rest);
    case "prune":
      return await prune(rest);
    case "import":
    case "export": {
      // The archive formats (OCI layout and archive, docker save) load only for these verbs.
      const io = await import("./image_io.ts");
      const given = ["image", sub, ...rest];
      return sub === "import" ? await io.imageImport(given) : await io.imageExport(given);
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(IMAGE_HELP.trimEnd());
      return sub === undefined ? 125 : 0;
    default:
      throw new MicroError(`unknown image command "${sub}"`, { hint: 'see "micro image --help"' });
  }
}

/** `2 days ago`, as Docker prints CREATED. */
export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "unknown";
  const s = Math.max(0, Math.round((now - t) / 1000));
  const units: [number, string][] = [
    [365 * 86400, "year"],
    [30 * 86400, "month"],
    [7 * 86400, "week"],
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [n, u] of units) {
    if (s >= n) {
      const k = Math.floor(s / n);
      return `${k} ${u}${k > 1 ? "s" : ""} ago`;
    }
  }
  return s < 2 ? "Less than a second ago" : `${s} seconds ago`;
}

/** Repository and tag columns for a stored name (`docker.io/library/alpine:3` → alpine, 3). */
export function repoTag(name: string): { repo: string; tag: string; digest?: string } {
  const at = name.indexOf("@");
  const base = at < 0 ? name : name.slice(0, at);
  const digest = at < 0 ? undefined : name.slice(at + 1);
  const colon = base.lastIndexOf(":");
  const hasTag = colon > base.lastIndexOf("/");
  let repo = hasTag ? base.slice(0, colon) : base;
  const tag = hasTag ? base.slice(colon + 1) : "<none>";
  if (repo.startsWith("docker.io/")) {
    repo = repo.slice("docker.io/".length);
    if (repo.startsWith("library/") && repo.split("/").length === 2) repo = repo.slice(8);
  }
  return { repo, tag, ...(digest ? { digest } : {}) };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join("   "))
    .join("\n");
}

async function ls(argv: string[]): Promise<number> {
  const { flags, args } = parseArgs(
    argv,
    { quiet: "flag", digests: "flag", root: "value", "no-trunc": "flag" },
    { "-q": "quiet" },
    'see "micro image --help"',
  );
  if (args.length > 0) throw new MicroError("usage: micro image ls [-q] [--digests]");
  const root = await storeRootOf(flags);
  const { listImages } = await import("../core/store/images.ts");
  const { formatBytes } = await import("../core/image/progress.ts");
  const all = await listImages(root);
  const full = flags.get("no-trunc") === "true";
  const idOf = (id: string) => full ? `sha256:${id}` : id.slice(0, 12);
  if (flags.get("quiet") === "true") {
    for (const id of new Set(all.map((i) => idOf(i.id)))) console.log(id);
    return 0;
  }
  const digests = flags.get("digests") === "true";
  const rows: string[][] = [[
    "REPOSITORY",
    "TAG",
    ...(digests ? ["DIGEST"] : []),
    "IMAGE ID",
    "CREATED",
    "SIZE",
  ]];
  for (const img of all) {
    const names = img.names.length ? img.names : [""];
    for (const n of names) {
      const rt = n ? repoTag(n) : { repo: "<none>", tag: "<none>", digest: undefined };
      const repoDigest = img.repoDigests.find((d) => rt.repo && d.includes(rt.repo)) ?? "";
      rows.push([
        rt.repo,
        rt.tag,
        ...(digests ? [rt.digest ?? (repoDigest.split("@")[1] ?? "<none>")] : []),
        idOf(img.id),
        ago(img.created),
        formatBytes(img.size),
      ]);
    }
  }
  console.log(table(rows));
  return 0;
}

async function rm(argv: string[]): Promise<number> {
  const { flags, args } = parseArgs(
    argv,
    { force: "flag", root: "value" },
    { "-f": "force" },
    'see "micro image --help"',
  );
  if (args.length === 0) throw new MicroError("usage: micro image rm [-f] IMAGE...");
  const root = await storeRootOf(flags);
  const { removeImage } = await import("../core/store/images.ts");
  let failed = 0;
  for (const a of args) {
    try {
      const r = await removeImage(root, a, { force: flags.get("force") === "true" });
      for (const n of r.untagged) {
        const { repo, tag, digest } = repoTag(n);
        console.log(`Untagged: ${repo}${digest ? `@${digest}` : `:${tag}`}`);
      }
      for (const id of r.deleted) console.log(`Deleted: sha256:${id}`);
    } catch (e) {
      if (!(e instanceof MicroError)) throw e;
      console.error(`micro: ${e.line()}`);
      failed++;
    }
  }
  return failed ? 125 : 0;
}

/** A record as `docker image inspect` shows one (the fields that apply). */
function inspectView(img: import("../core/store/images.ts").StoredImage) {
  const c = img.config;
  return {
    Id: `sha256:${img.id}`,
    RepoTags: img.names.filter((n) => !n.includes("@")),
    RepoDigests: img.repoDigests,
    Created: img.created,
    Architecture: c.architecture,
    ...(c.variant ? { Variant: c.variant } : {}),
    Os: c.os,
    Size: img.size,
    Config: c.config ?? {},
    RootFS: { Type: "layers", Layers: img.layers.map((l) => l.diffId) },
    Micro: {
      ManifestDigest: img.manifestDigest,
      ...(img.indexDigest ? { IndexDigest: img.indexDigest } : {}),
      Platform: img.platform,
      Stored: img.stored,
      Layers: img.layers,
    },
  };
}

async function inspect(argv: string[]): Promise<number> {
  const { flags, args } = parseArgs(argv, { root: "value" }, {}, 'see "micro image --help"');
  if (args.length === 0) throw new MicroError("usage: micro image inspect IMAGE...");
  const root = await storeRootOf(flags);
  const { findImage } = await import("../core/store/images.ts");
  const out = [];
  let failed = 0;
  for (const a of args) {
    const img = await findImage(root, a);
    if (!img) {
      console.error(`micro: no such image: ${a}`);
      failed++;
      continue;
    }
    out.push(inspectView(img));
  }
  console.log(JSON.stringify(out, null, 4));
  return failed ? 125 : 0;
}

async function prune(argv: string[]): Promise<number> {
  const { flags, args } = parseArgs(
    argv,
    { all: "flag", force: "flag", root: "value" },
    { "-a": "all", "-f": "force" },
    'see "micro image --help"',
  );
  if (args.length > 0) throw new MicroError("usage: micro image prune [-a]");
  const root = await storeRootOf(flags);
  const { pruneImages } = await import("../core/store/images.ts");
  const { formatBytes } = await import("../core/image/progress.ts");
  const r = await pruneImages(root, { all: flags.get("all") === "true" });
  if (r.untagged.length || r.deleted.length) {
    console.log("Deleted Images:");
    for (const n of r.untagged) {
      const { repo, tag, digest } = repoTag(n);
      console.log(`untagged: ${repo}${digest ? `@${digest}` : `:${tag}`}`);
    }
    for (const id of r.deleted) console.log(`deleted: sha256:${id}`);
    console.log("");
  }
  console.log(
    `Total reclaimed space: ${formatBytes(r.blobBytes)} of blobs, ${r.layers} layer${
      r.layers === 1 ? "" : "s"
    }`,
  );
  return 0;
}
