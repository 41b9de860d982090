/**
 * Test registries on loopback, started and stopped by the tests:
 *
 * - `writeLayout` writes an OCI image layout byte by byte (tar layers, gzip), single images
 *   and a multi-platform index, so no image has to come from outside.
 * - `startRegistry` runs Debian's `docker-registry serve` (distribution 2.8) on 127.0.0.1 on
 *   a free port with a config written here (plain, htpasswd over TLS, or token auth);
 *   `skopeoCopy` fills it from a layout.
 * - `startTokenServer` issues ES256 JWTs the registry's `auth: token` accepts (x5c header,
 *   the signing cert in its rootcertbundle).
 * - `startFakeRegistry` is a small registry in Deno.serve serving blobs from memory, with
 *   faults on demand: a corrupt blob, a connection dropped mid-blob, slow bodies, Range.
 *
 * Nothing listens anywhere but 127.0.0.1, and every process is killed by its stop().
 */
import { gzipSync } from "node:zlib";
import { createHash } from "node:crypto";

export const enc = new TextEncoder();

export function sha256(data: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

export function which(cmd: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Why the registry tests cannot run here, or undefined. */
export function missingTools(): string | undefined {
  for (const t of ["docker-registry", "skopeo", "openssl", "htpasswd"]) {
    if (!which(t)) return `${t} is not installed (tools/install-test-deps.sh installs it)`;
  }
  return undefined;
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export async function run(cmd: string, args: string[], opts: { cwd?: string } = {}) {
  const out = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}): ${text}`);
  return text;
}

// ---- tar and OCI layout -------------------------------------------------------------------

export interface TarFile {
  path: string;
  data?: Uint8Array;
  mode?: number;
  dir?: boolean;
  /** Owner ids (default 0). */
  uid?: number;
  gid?: number;
}

/** A ustar archive of `files` (paths under 100 bytes), owners 0 unless given, mtime fixed. */
export function tar(files: TarFile[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const f of files) {
    const h = new Uint8Array(512);
    const put = (off: number, s: string) => h.set(enc.encode(s), off);
    const oct = (off: number, len: number, n: number) =>
      put(off, n.toString(8).padStart(len - 1, "0") + "\0");
    const data = f.data ?? new Uint8Array(0);
    put(0, f.dir ? f.path.replace(/\/?$/, "/") : f.path);
    oct(100, 8, f.mode ?? (f.dir ? 0o755 : 0o644));
    oct(108, 8, f.uid ?? 0);
    oct(116, 8, f.gid ?? 0);
    oct(124, 12, f.dir ? 0 : data.length);
    oct(136, 12, 1700000000);
    put(156, f.dir ? "5" : "0");
    put(257, "ustar\x0000");
    h.fill(0x20, 148, 156);
    const sum = h.reduce((a, b) => a + b, 0);
    put(148, sum.toString(8).padStart(6, "0") + "\0 ");
    blocks.push(h);
    if (!f.dir && data.length) {
      const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
      padded.set(data);
      blocks.push(padded);
    }
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of blocks) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** Deterministic pseudo-random bytes (incompressible, so gzip keeps the size). */
export function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export interface Blob {
  digest: string;
  data: Uint8Array;
  mediaType: string;
}

function blobOf(data: Uint8Array, mediaType: string): Blob {
  return { digest: sha256(data), data: new Uint8Array(data), mediaType };
}

export interface TestImage {
  manifest: Blob;
  config: Blob;
  layers: Blob[];
  /** Every blob, manifest included. */
  blobs: Blob[];
}

const LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip";

/** One OCI image from layer file lists (each gzipped), for `architecture`. */
export function makeImage(
  layers: TarFile[][],
  architecture = "amd64",
  /** More of the image's `config` (ExposedPorts, ...). */
  extra: Record<string, unknown> = {},
): TestImage {
  const layerBlobs = layers.map((files) => blobOf(gzipSync(tar(files), { level: 1 }), LAYER_GZ));
  const diffIds = layers.map((files) => sha256(tar(files)));
  const config = blobOf(
    enc.encode(JSON.stringify({
      architecture,
      os: "linux",
      config: { Env: ["PATH=/bin"], Cmd: ["/bin/sh"], WorkingDir: "/", ...extra },
      rootfs: { type: "layers", diff_ids: diffIds },
    })),
    "application/vnd.oci.image.config.v1+json",
  );
  const manifest = blobOf(
    enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: config.mediaType, digest: config.digest, size: config.data.length },
      layers: layerBlobs.map((l) => ({
        mediaType: l.mediaType,
        digest: l.digest,
        size: l.data.length,
      })),
    })),
    "application/vnd.oci.image.manifest.v1+json",
  );
  return { manifest, config, layers: layerBlobs, blobs: [manifest, config, ...layerBlobs] };
}

/** An image index over images, each with its config's platform. */
export function makeIndex(images: { image: TestImage; architecture: string }[]): Blob {
  return blobOf(
    enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: images.map(({ image, architecture }) => ({
        mediaType: image.manifest.mediaType,
        digest: image.manifest.digest,
        size: image.manifest.data.length,
        platform: { os: "linux", architecture },
      })),
    })),
    "application/vnd.oci.image.index.v1+json",
  );
}

/** Writes an OCI layout holding `tags` (tag → top blob: a manifest or an index). */
export async function writeLayout(
  dir: string,
  blobs: Blob[],
  tags: Record<string, Blob>,
): Promise<void> {
  await Deno.mkdir(`${dir}/blobs/sha256`, { recursive: true });
  await Deno.writeTextFile(`${dir}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  for (const b of blobs) await Deno.writeFile(`${dir}/blobs/sha256/${b.digest.slice(7)}`, b.data);
  await Deno.writeTextFile(
    `${dir}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: Object.entries(tags).map(([tag, b]) => ({
        mediaType: b.mediaType,
        digest: b.digest,
        size: b.data.length,
        annotations: { "org.opencontainers.image.ref.name": tag },
      })),
    }),
  );
}

/** `skopeo copy --all oci:LAYOUT:TAG docker://DEST` with the given extra flags. */
export async function skopeoCopy(layout: string, tag: string, dest: string, flags: string[]) {
  await run("skopeo", [
    "--insecure-policy",
    "copy",
    "--all",
    "--quiet",
    ...flags,
    `oci:${layout}:${tag}`,
    `docker://${dest}`,
  ]);
}

// ---- docker-registry ----------------------------------------------------------------------

export interface Server {
  port: number;
  host: string;
  stop(): Promise<void>;
}

async function waitPort(port: number, proc?: Deno.ChildProcess, logFile?: string) {
  for (let i = 0; i < 200; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const log = logFile ? await Deno.readTextFile(logFile).catch(() => "") : "";
  proc?.kill("SIGKILL");
  throw new Error(`nothing listens on 127.0.0.1:${port} after 10 s: ${log.slice(-2000)}`);
}

export interface RegistryConfig {
  tls?: { cert: string; key: string };
  htpasswd?: string;
  token?: { realm: string; service: string; issuer: string; rootcertbundle: string };
}

/** `docker-registry serve` on 127.0.0.1, storage under `dir`; stop() kills and waits. */
export async function startRegistry(dir: string, cfg: RegistryConfig = {}): Promise<Server> {
  const port = freePort();
  const lines = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${dir}/storage`,
    "http:",
    `  addr: 127.0.0.1:${port}`,
    `  secret: test-${port}`,
  ];
  if (cfg.tls) lines.push("  tls:", `    certificate: ${cfg.tls.cert}`, `    key: ${cfg.tls.key}`);
  if (cfg.htpasswd) {
    lines.push("auth:", "  htpasswd:", "    realm: micro-test", `    path: ${cfg.htpasswd}`);
  }
  if (cfg.token) {
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${cfg.token.realm}`,
      `    service: ${cfg.token.service}`,
      `    issuer: ${cfg.token.issuer}`,
      `    rootcertbundle: ${cfg.token.rootcertbundle}`,
    );
  }
  await Deno.mkdir(`${dir}/storage`, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.yml`, lines.join("\n") + "\n");
  const log = `${dir}/registry.log`;
  const logFile = await Deno.open(log, { write: true, create: true, truncate: true });
  const proc = new Deno.Command("docker-registry", {
    args: ["serve", `${dir}/config.yml`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pump = Promise.all([
    proc.stdout.pipeTo(logFile.writable, { preventClose: true }).catch(() => {}),
    proc.stderr.pipeTo(
      new WritableStream({ write: (c) => void Deno.writeFileSync(log, c, { append: true }) }),
    ).catch(() => {}),
  ]);
  await waitPort(port, proc, log);
  return {
    port,
    host: `127.0.0.1:${port}`,
    async stop() {
      try {
        proc.kill("SIGKILL");
      } catch {
        // gone already
      }
      await proc.status;
      await pump;
      logFile.close();
    },
  };
}

/** A CA and a server cert for 127.0.0.1/localhost, made with openssl in `dir`. */
export async function makeTlsFiles(dir: string) {
  const o = (args: string[]) => run("openssl", args, { cwd: dir });
  await o([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=micro test CA",
  ]);
  await o([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ]);
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await o([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return { ca: `${dir}/ca.crt`, cert: `${dir}/server.crt`, key: `${dir}/server.key` };
}

// ---- token server -------------------------------------------------------------------------

function b64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  return btoa(String.fromCharCode(...bytes)).replace(/=+$/, "").replace(/\+/g, "-").replace(
    /\//g,
    "_",
  );
}

function pemBody(pem: string): Uint8Array<ArrayBuffer> {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export interface TokenServer extends Server {
  realm: string;
  service: string;
  issuer: string;
  rootcertbundle: string;
  /** Token requests seen: the Authorization user ("" anonymous) and the scope. */
  requests: { user: string; scope: string }[];
}

/**
 * A token server for `auth: token`: `users` may do anything, anonymous callers may pull
 * repositories under `public/`. A wrong password gets 401.
 */
export async function startTokenServer(
  dir: string,
  users: Record<string, string>,
): Promise<TokenServer> {
  await run("openssl", [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    "token.key",
  ], { cwd: dir });
  await run("openssl", [
    "req",
    "-x509",
    "-new",
    "-key",
    "token.key",
    "-out",
    "token.crt",
    "-days",
    "2",
    "-subj",
    "/CN=micro test token issuer",
  ], { cwd: dir });
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pemBody(await Deno.readTextFile(`${dir}/token.key`)),
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign"],
  );
  const x5c = btoa(String.fromCharCode(...pemBody(await Deno.readTextFile(`${dir}/token.crt`))));
  const service = "micro-test-registry";
  const issuer = "micro-test-issuer";
  const requests: { user: string; scope: string }[] = [];
  const port = freePort();
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    let user = "";
    const auth = req.headers.get("authorization");
    if (auth?.startsWith("Basic ")) {
      const [u, ...p] = atob(auth.slice(6)).split(":");
      if (users[u] !== p.join(":")) return new Response("bad credentials", { status: 401 });
      user = u;
    }
    const scopes = url.searchParams.getAll("scope").flatMap((s) => s.split(" ")).filter((s) => s);
    requests.push({ user, scope: scopes.join(" ") });
    const access = scopes.map((s) => {
      const [type, name, actions] = s.split(":");
      const granted = user
        ? actions.split(",")
        : name.startsWith("public/")
        ? actions.split(",").filter((a) => a === "pull")
        : [];
      return { type, name, actions: granted };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "ES256", x5c: [x5c] };
    const claims = {
      iss: issuer,
      sub: user,
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: crypto.randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, enc.encode(input)),
    );
    const token = `${input}.${b64url(sig)}`;
    return Response.json({ token, access_token: token, expires_in: 300 });
  });
  return {
    port,
    host: `127.0.0.1:${port}`,
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootcertbundle: `${dir}/token.crt`,
    requests,
    stop: () => server.shutdown(),
  };
}

// ---- fake registry ------------------------------------------------------------------------

export interface FakeOptions {
  /** Blobs (by digest) served with one byte flipped. */
  corrupt?: Set<string>;
  /** Blobs whose first GET breaks off after this many bytes. */
  dropAfter?: Map<string, number>;
  /** Bytes per second for blob bodies (chunks of 16 KiB); unlimited when absent. */
  rate?: number;
  /** Answer Range requests (default true). */
  ranges?: boolean;
}

export interface FakeRegistry extends Server {
  /** Every blob GET: digest and the Range header ("" when none). */
  blobGets: { digest: string; range: string }[];
}

/** A registry speaking just enough of the API v2 (no auth) over in-memory blobs. */
export function startFakeRegistry(
  repos: Record<string, { tags: Record<string, Blob>; blobs: Blob[] }>,
  opts: FakeOptions = {},
): FakeRegistry {
  const blobGets: { digest: string; range: string }[] = [];
  const dropped = new Set<string>();
  const port = freePort();
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/v2/") return new Response("{}");
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    const repo = m ? repos[m[1]] : undefined;
    if (!m || !repo) {
      return Response.json({
        errors: [{ code: "NAME_UNKNOWN", message: "repository name not known to registry" }],
      }, {
        status: 404,
      });
    }
    const ref = m[3];
    const blob = repo.tags[ref] ?? repo.blobs.find((b) => b.digest === ref);
    if (!blob) {
      const code = m[2] === "manifests" ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN";
      return Response.json({ errors: [{ code, message: `${m[2].slice(0, -1)} unknown` }] }, {
        status: 404,
      });
    }
    if (m[2] === "manifests") {
      return new Response(blob.data as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": blob.mediaType, "docker-content-digest": blob.digest },
      });
    }
    let data = blob.data;
    if (opts.corrupt?.has(blob.digest)) {
      data = data.slice();
      data[data.length >> 1] ^= 0xff;
    }
    const range = req.headers.get("range") ?? "";
    blobGets.push({ digest: blob.digest, range });
    let start = 0;
    let status = 200;
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    const rm = /^bytes=(\d+)-$/.exec(range);
    if (rm && opts.ranges !== false) {
      start = Number(rm[1]);
      status = 206;
      headers["content-range"] = `bytes ${start}-${data.length - 1}/${data.length}`;
    }
    const body = data.subarray(start);
    headers["content-length"] = String(body.length);
    const drop = opts.dropAfter?.get(blob.digest);
    const dropNow = drop !== undefined && !dropped.has(blob.digest);
    if (dropNow) dropped.add(blob.digest);
    const chunk = 16384;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (dropNow && sent >= drop!) {
          c.close(); // fewer bytes than Content-Length: the connection is cut
          return;
        }
        if (sent >= body.length) {
          c.close();
          return;
        }
        let n = Math.min(chunk, body.length - sent);
        if (dropNow) n = Math.min(n, drop! - sent);
        if (opts.rate) await new Promise((r) => setTimeout(r, (n / opts.rate!) * 1000));
        c.enqueue(body.slice(sent, sent + n));
        sent += n;
      },
    });
    return new Response(stream, { status, headers });
  });
  return {
    port,
    host: `127.0.0.1:${port}`,
    blobGets,
    stop: () => server.shutdown(),
  };
}
