/**
 * The OCI distribution API v2 client: manifests, blobs, auth, and `pullImage`.
 *
 * Anchored on containers/image (skopeo, podman): ping /v2/ to learn the scheme and the auth
 * challenge; Bearer tokens from the challenge's realm (anonymous, or with basic credentials),
 * or basic auth; https first, plain http only for loopback hosts, hosts the caller marks
 * insecure and `tlsVerify: false`. Every byte is checked against its digest before the blob
 * store makes it visible; layers come in parallel (3 at a time), each retried with a resume
 * from where it stopped when the registry honours Range.
 */
import { MicroError } from "../errors.ts";
import {
  authKey,
  basicHeader,
  type Challenge,
  type Credentials,
  defaultAuthFile,
  lookupCredentials,
  parseChallenges,
  storeCredentials,
} from "./auth.ts";
import { type BlobStore, type BlobWriter, DigestMismatch, digestOf } from "./blobs.ts";
import {
  choosePlatform,
  formatPlatform,
  hostPlatform,
  parsePlatform,
  platformMatches,
} from "./platform.ts";
import type { Platform, PlatformEntry } from "./platform.ts";
import { apiHost, formatReference, isLoopback, parseDigest, type Reference } from "./reference.ts";
import { makeTransport, NetworkError, networkError, type RegistryTransport } from "./transport.ts";

export const MEDIA = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
} as const;

const MANIFEST_TYPES = new Set<string>([MEDIA.ociManifest, MEDIA.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA.ociIndex, MEDIA.dockerList]);
const CONFIG_TYPES = new Set<string>([MEDIA.ociConfig, MEDIA.dockerConfig]);
/** Layer media types micro can unpack: tar, gzip, zstd (OCI and Docker names). */
export const LAYER_TYPES = new Set<string>([
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.oci.image.layer.v1.tar+gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd",
  "application/vnd.docker.image.rootfs.diff.tar.gzip",
  "application/vnd.docker.image.rootfs.diff.tar",
]);

const ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(
  ", ",
);
const MANIFEST_MAX = 4 << 20;
const CONFIG_MAX = 8 << 20;
const ERROR_BODY_MAX = 64 << 10;
const TOKEN_BODY_MAX = 1 << 20;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: PlatformEntry["platform"];
}

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The OCI image config as far as micro reads it (the rest is kept in the blob). */
export interface ImageConfig {
  os?: string;
  architecture?: string;
  variant?: string;
  config?: {
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    User?: string;
    StopSignal?: string;
    [k: string]: unknown;
  };
  rootfs?: { type: string; diff_ids: string[] };
  [k: string]: unknown;
}

/** One blob's progress. `total` is its size from the descriptor. */
export interface ProgressEvent {
  digest: string;
  kind: "index" | "manifest" | "config" | "layer";
  /**
   * "downloaded" and "extracting" come from the image store (a layer's blob is in, then
   * unpacked), which sends a layer's "done" once it is unpacked.
   */
  state:
    | "waiting"
    | "downloading"
    | "retrying"
    | "downloaded"
    | "extracting"
    | "done"
    | "exists";
  done: number;
  total?: number;
  /** Why a retry happens (one line), with state "retrying". */
  message?: string;
}

export interface RegistryOptions {
  /** false: no certificate checks, plain http allowed (podman's --tls-verify=false). */
  tlsVerify?: boolean;
  /** CA directories as Docker's certs.d (HOST:PORT/*.crt); default `defaultCertDirs()`. */
  certDirs?: string[];
  /** Registries (host[:port]) that may be plain http besides loopback ones. */
  insecureHosts?: string[];
  /** Credentials to use instead of the auth files. */
  credentials?: Credentials;
  /** micro's auth file (default $XDG_CONFIG_HOME/micro/auth.json). */
  authFile?: string;
  /** Docker's config.json (default ~/.docker/config.json); null skips it. */
  dockerConfig?: string | null;
  signal?: AbortSignal;
  /** Per-request timeout for everything but blob bodies (ms, default 60000). */
  timeoutMs?: number;
  /** A blob body that sends nothing this long is retried (ms, default 60000). */
  stallTimeoutMs?: number;
  /** Tries per blob (default 5) and the first back-off (ms, default 500, doubled each time). */
  retries?: number;
  retryDelayMs?: number;
}

export interface PullOptions extends RegistryOptions {
  /** `linux/arm64`, `linux/arm/v7`: the manifest to take from an index; default the host's. */
  platform?: string;
  onProgress?: (e: ProgressEvent) => void;
  /** Layers downloaded at once (default 3). */
  concurrency?: number;
}

export interface PulledImage {
  /** The normalised reference pulled: `docker.io/library/alpine:latest`. */
  ref: string;
  /** The image manifest's digest (for the chosen platform). */
  manifestDigest: string;
  /** The index's (manifest list's) digest when the reference named one. */
  indexDigest?: string;
  manifest: ImageManifest;
  config: ImageConfig;
  configDigest: string;
  layers: { digest: string; mediaType: string; size: number }[];
  /** The platform of the image (from its config, else the one asked for). */
  platform: string;
}

function pullError(message: string, hint?: string): MicroError {
  return new MicroError(message, { phase: "pull", hint });
}

/** Reads at most `max` bytes of a body; more is an error naming `what`. */
async function readBody(res: Response, max: number, what: string): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  const len = Number(res.headers.get("content-length") ?? "NaN");
  if (len > max) {
    await res.body.cancel().catch(() => {});
    throw pullError(`${what}: ${len} bytes, more than the ${max} allowed`);
  }
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += c.length;
    if (n > max) throw pullError(`${what}: more than the ${max} bytes allowed`);
    chunks.push(c);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** `404 Not Found: MANIFEST_UNKNOWN: manifest unknown` from a failed response. */
async function statusLine(res: Response): Promise<string> {
  let detail = "";
  try {
    const body = await readBody(res, ERROR_BODY_MAX, "error body");
    const j = JSON.parse(new TextDecoder().decode(body));
    const errs = Array.isArray(j?.errors) ? j.errors : [];
    detail = errs.slice(0, 3).map((e: { code?: unknown; message?: unknown }) =>
      [e.code, e.message].filter((x) => typeof x === "string" && x).join(": ")
    ).filter((s: string) => s).join("; ");
  } catch {
    await res.body?.cancel().catch(() => {});
  }
  const line = `${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
  return (detail ? `${line}: ${detail}` : line).replace(/\s+/g, " ").slice(0, 400);
}

function hintForStatus(status: number, domain: string): string | undefined {
  if (status === 401 || status === 403) {
    return `log in with micro login ${domain}, or check the name and your access to it`;
  }
  if (status === 404) return "check the image name and tag";
  if (status === 429) return "the registry is rate limiting: wait and try again";
  if (status >= 500) return "the registry failed; try again later";
  return undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The registry's answer to a retryable failure, or undefined when it is final. */
function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A client for one registry (scheme, transport, credentials and tokens are per registry). */
export class RegistryClient {
  readonly host: string;
  private base?: URL;
  private transport?: RegistryTransport;
  private challenge?: Challenge;
  private creds?: Credentials;
  private credsLoaded = false;
  private tokens = new Map<string, string>();
  private basicSent = false;

  constructor(readonly domain: string, readonly opts: RegistryOptions = {}) {
    this.host = apiHost(domain);
  }

  /** Drops connections held by the HTTP client. */
  close(): void {
    this.transport?.close();
  }

  private plainAllowed(): boolean {
    return isLoopback(this.domain) || this.opts.tlsVerify === false ||
      (this.opts.insecureHosts ?? []).includes(this.domain);
  }

  private signal(timeout = true): AbortSignal | undefined {
    const s = [
      this.opts.signal,
      timeout ? AbortSignal.timeout(this.opts.timeoutMs ?? 60000) : undefined,
    ]
      .filter((x): x is AbortSignal => !!x);
    return s.length ? AbortSignal.any(s) : undefined;
  }

  private async credentials(): Promise<Credentials | undefined> {
    if (!this.credsLoaded) {
      this.creds = this.opts.credentials ??
        await lookupCredentials(this.domain, {
          authFile: this.opts.authFile,
          dockerConfig: this.opts.dockerConfig,
        });
      this.credsLoaded = true;
    }
    return this.creds;
  }

  /** One raw request with redirects followed by hand (Authorization only to the same host). */
  private async send(
    url: URL,
    method: string,
    headers: Headers,
    signal?: AbortSignal,
  ): Promise<Response> {
    const t = this.transport!;
    let u = url;
    for (let hop = 0; hop <= 5; hop++) {
      let res: Response;
      try {
        res = await t.fetch(u, { method, headers, signal });
      } catch (e) {
        if (this.opts.signal?.aborted) throw this.opts.signal.reason;
        throw networkError(method, u, e);
      }
      const loc = res.headers.get("location");
      if (![301, 302, 303, 307, 308].includes(res.status) || !loc) return res;
      await res.body?.cancel().catch(() => {});
      const next = new URL(loc, u);
      if (next.protocol !== "https:" && next.protocol !== "http:") {
        throw pullError(`${method} ${u.href}: redirect to ${next.protocol} refused`);
      }
      if (next.protocol === "http:" && u.protocol === "https:" && !this.plainAllowed()) {
        throw pullError(`${method} ${u.href}: redirect from https to plain http refused`);
      }
      if (next.host !== u.host) {
        headers = new Headers(headers);
        headers.delete("authorization");
      }
      u = next;
    }
    throw pullError(`${method} ${url.href}: too many redirects`);
  }

  /**
   * Finds the scheme (https, else plain http where allowed) with GET /v2/, and remembers the
   * auth challenge it answers with.
   */
  private async ping(): Promise<void> {
    if (this.base) return;
    this.transport ??= await makeTransport(this.domain, this.opts);
    const tryBase = async (scheme: string) => {
      const base = new URL(`${scheme}://${this.host}/v2/`);
      const res = await this.send(base, "GET", new Headers(), this.signal());
      return { base, res };
    };
    let got: { base: URL; res: Response };
    try {
      got = await tryBase("https");
    } catch (e) {
      if (!this.plainAllowed() || this.opts.signal?.aborted) throw e;
      let plain: { base: URL; res: Response };
      try {
        plain = await tryBase("http");
      } catch {
        throw e;
      }
      // A TLS server answers plain http with 400: then the https error is the real one.
      if (plain.res.status === 400) {
        await plain.res.body?.cancel().catch(() => {});
        throw e;
      }
      got = plain;
    }
    this.base = got.base;
    const header = got.res.headers.get("www-authenticate");
    if (got.res.status === 401 && header) {
      this.challenge = parseChallenges(header).find((c) =>
        c.scheme === "bearer" || c.scheme === "basic"
      );
    }
    await got.res.body?.cancel().catch(() => {});
    if (got.res.status !== 200 && got.res.status !== 401) {
      throw pullError(
        `GET ${got.base.href}: ${await statusLine(got.res)}: not an OCI registry API`,
        hintForStatus(got.res.status, this.domain),
      );
    }
  }

  /** A Bearer token for `scope` from the challenge's realm (cached per scope). */
  private async token(ch: Challenge, scope: string | undefined): Promise<string> {
    const key = scope ?? "";
    const cached = this.tokens.get(key);
    if (cached) return cached;
    const realm = ch.params.realm;
    if (!realm) throw pullError(`${this.domain}: Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw pullError(`${this.domain}: Bearer challenge with a bad realm ${JSON.stringify(realm)}`);
    }
    if (ch.params.service) url.searchParams.set("service", ch.params.service);
    if (scope) url.searchParams.set("scope", scope);
    const headers = new Headers();
    const creds = await this.credentials();
    if (creds) {
      // Never send a password in clear text to a host that is not plainly trusted.
      const realmLoopback = isLoopback(url.host);
      if (url.protocol !== "https:" && !realmLoopback && !this.plainAllowed()) {
        throw pullError(
          `${this.domain}: token realm ${url.origin} is plain http; credentials not sent`,
        );
      }
      headers.set("authorization", basicHeader(creds));
    }
    const res = await this.send(url, "GET", headers, this.signal());
    if (res.status !== 200) {
      const line = await statusLine(res);
      const bad = res.status === 401 || res.status === 403;
      if (bad && creds) {
        throw pullError(
          `${this.domain}: wrong username or password: the token server ${url.origin}${url.pathname} answered ${line}`,
          `check them, then micro login ${this.domain}`,
        );
      }
      throw pullError(
        `${this.domain}: token from ${url.origin}${url.pathname}: ${line}`,
        hintForStatus(res.status, this.domain),
      );
    }
    let tok: string | undefined;
    try {
      const j = JSON.parse(new TextDecoder().decode(await readBody(res, TOKEN_BODY_MAX, "token")));
      tok = typeof j.token === "string" && j.token
        ? j.token
        : typeof j.access_token === "string"
        ? j.access_token
        : undefined;
    } catch (e) {
      if (e instanceof MicroError) throw e;
    }
    if (!tok) {
      throw pullError(`${this.domain}: token server ${url.origin} answered without a token`);
    }
    this.tokens.set(key, tok);
    return tok;
  }

  /** The Authorization header for a request in `scope`, from the challenge seen so far. */
  private async authorization(scope: string | undefined): Promise<string | undefined> {
    const ch = this.challenge;
    if (!ch) return undefined;
    if (ch.scheme === "bearer") return `Bearer ${await this.token(ch, scope ?? ch.params.scope)}`;
    if (ch.scheme === "basic") {
      const c = await this.credentials();
      if (c) {
        this.basicSent = true;
        return basicHeader(c);
      }
    }
    return undefined;
  }

  /**
   * A request to the API (`path` after /v2/) with auth: the challenge's scheme is used up
   * front, and a 401 with a new challenge (another scope, an expired token) is answered once.
   */
  async request(
    path: string,
    init: { method?: string; headers?: HeadersInit; scope?: string; signal?: AbortSignal } = {},
  ): Promise<Response> {
    await this.ping();
    const method = init.method ?? "GET";
    const url = new URL(path, this.base);
    for (let attempt = 0;; attempt++) {
      const headers = new Headers(init.headers);
      const auth = await this.authorization(init.scope);
      if (auth) headers.set("authorization", auth);
      const res = await this.send(url, method, headers, init.signal ?? this.signal());
      if (res.status !== 401 || attempt > 0) return res;
      const header = res.headers.get("www-authenticate");
      const ch = header
        ? parseChallenges(header).find((c) => c.scheme === "bearer" || c.scheme === "basic")
        : undefined;
      if (!ch) return res;
      if (ch.scheme === "basic" && (this.basicSent || !(await this.credentials()))) return res;
      await res.body?.cancel().catch(() => {});
      this.challenge = ch;
      this.tokens.delete(init.scope ?? ch.params.scope ?? "");
    }
  }

  /** Throws the registry's answer as one line. */
  async fail(method: string, path: string, res: Response): Promise<never> {
    const url = new URL(path, this.base);
    throw pullError(
      `${method} ${url.href}: ${await statusLine(res)}`,
      hintForStatus(res.status, this.domain),
    );
  }

  /**
   * Fetches a manifest (or index) by tag or digest. A digest reference is checked against
   * the bytes; a tag's bytes are checked against Docker-Content-Digest when given.
   */
  async manifest(
    repo: string,
    reference: string,
  ): Promise<{ bytes: Uint8Array; digest: string; mediaType: string }> {
    const path = `${repo}/manifests/${reference}`;
    const scope = `repository:${repo}:pull`;
    let res: Response | undefined;
    const tries = this.opts.retries ?? 5;
    for (let i = 0;; i++) {
      res = await this.request(path, { headers: { accept: ACCEPT }, scope });
      if (res.ok || !retryable(res.status) || i + 1 >= tries) break;
      await res.body?.cancel().catch(() => {});
      await sleep((this.opts.retryDelayMs ?? 500) * 2 ** i, this.opts.signal);
    }
    if (!res.ok) return await this.fail("GET", path, res);
    const bytes = await readBody(res, MANIFEST_MAX, `manifest ${repo}:${reference}`);
    const isDigest = reference.includes(":");
    const algorithm = isDigest ? parseDigest(reference).algorithm : "sha256";
    const digest = digestOf(bytes, algorithm);
    if (isDigest && digest !== reference) {
      throw new DigestMismatch(reference, digest, bytes.length);
    }
    const claimed = res.headers.get("docker-content-digest");
    if (!isDigest && claimed?.startsWith("sha256:") && claimed !== digest) {
      throw new DigestMismatch(claimed, digest, bytes.length);
    }
    let mediaType = (res.headers.get("content-type") ?? "").split(";")[0].trim();
    try {
      const j = JSON.parse(new TextDecoder().decode(bytes));
      if (typeof j?.mediaType === "string" && j.mediaType) mediaType = j.mediaType;
      else if (!MANIFEST_TYPES.has(mediaType) && !INDEX_TYPES.has(mediaType)) {
        // untyped OCI JSON: an index has `manifests`, an image manifest `config` and `layers`
        if (Array.isArray(j?.manifests)) mediaType = MEDIA.ociIndex;
        else if (j?.config && Array.isArray(j?.layers)) mediaType = MEDIA.ociManifest;
      }
    } catch {
      throw pullError(`manifest ${repo}:${reference} (${digest}): not valid JSON`);
    }
    return { bytes, digest, mediaType };
  }

  /**
   * Downloads a blob into the store unless it is there: retried with back-off, resumed with
   * Range after a dropped connection, checked against `desc.digest` and `desc.size`.
   */
  async blob(
    repo: string,
    desc: { digest: string; size: number },
    store: BlobStore,
    onProgress: (state: ProgressEvent["state"], done: number, message?: string) => void,
  ): Promise<void> {
    const path = `${repo}/blobs/${desc.digest}`;
    const scope = `repository:${repo}:pull`;
    const tries = this.opts.retries ?? 5;
    const stallMs = this.opts.stallTimeoutMs ?? 60000;
    let restarted = false;
    for (;;) {
      try {
        const r = await store.ingest(desc.digest, async (w) => {
          onProgress("downloading", w.offset);
          for (let attempt = 1;; attempt++) {
            const failure = await this.blobAttempt(path, scope, desc, w, stallMs, onProgress);
            if (failure === undefined) return;
            if (failure.final || attempt >= tries) throw failure.error;
            onProgress("retrying", w.offset, failure.error.message);
            await sleep((this.opts.retryDelayMs ?? 500) * 2 ** (attempt - 1), this.opts.signal);
          }
        }, { size: desc.size });
        onProgress(r === "exists" ? "exists" : "done", desc.size);
        return;
      } catch (e) {
        // Bytes from an earlier killed pull went bad: start over once from nothing.
        if (e instanceof DigestMismatch && e.resumed && !restarted) {
          restarted = true;
          continue;
        }
        throw e;
      }
    }
  }

  /** One GET of a blob's remaining bytes; undefined when the blob is whole. */
  private async blobAttempt(
    path: string,
    scope: string,
    desc: { digest: string; size: number },
    w: BlobWriter,
    stallMs: number,
    onProgress: (state: ProgressEvent["state"], done: number, message?: string) => void,
  ): Promise<{ error: MicroError; final: boolean } | undefined> {
    const ac = new AbortController();
    const signal = AbortSignal.any([ac.signal, ...(this.opts.signal ? [this.opts.signal] : [])]);
    let stall = setTimeout(() => ac.abort(new Error("stalled")), stallMs);
    const kick = () => {
      clearTimeout(stall);
      stall = setTimeout(() => ac.abort(new Error("stalled")), stallMs);
    };
    try {
      const headers: Record<string, string> = {};
      if (w.offset > 0) headers.range = `bytes=${w.offset}-`;
      let res: Response;
      try {
        res = await this.request(path, { headers, scope, signal });
      } catch (e) {
        if (this.opts.signal?.aborted) throw e;
        // no answer at all is worth another try; an answer (bad token, TLS refusal) is not
        if (e instanceof NetworkError && !e.tls) return { error: e, final: false };
        throw e;
      }
      if (res.status === 416 && w.offset > 0) {
        await res.body?.cancel().catch(() => {});
        await w.reset();
        return { error: pullError(`blob ${desc.digest}: range not satisfiable`), final: false };
      }
      if (!res.ok) {
        const url = new URL(path, this.base);
        const error = pullError(
          `GET ${url.href}: ${await statusLine(res)}`,
          hintForStatus(res.status, this.domain),
        );
        return { error, final: !retryable(res.status) };
      }
      if (res.status === 206) {
        const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
        if (!m || Number(m[1]) !== w.offset) {
          await res.body?.cancel().catch(() => {});
          await w.reset();
          return { error: pullError(`blob ${desc.digest}: bad Content-Range`), final: false };
        }
      } else if (w.offset > 0) {
        await w.reset(); // the registry ignored Range: take the whole blob again
        onProgress("downloading", 0);
      }
      if (!res.body) return { error: pullError(`blob ${desc.digest}: empty answer`), final: false };
      // Chunks are gathered to 1 MiB per write: fewer syscalls and hash calls.
      let last = 0;
      const pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (!pendingBytes) return;
        const buf = pending.length === 1 ? pending[0] : new Uint8Array(pendingBytes);
        if (pending.length > 1) {
          let o = 0;
          for (const c of pending) {
            buf.set(c, o);
            o += c.length;
          }
        }
        pending.length = 0;
        pendingBytes = 0;
        await w.write(buf);
      };
      try {
        for await (const chunk of res.body) {
          kick();
          pending.push(chunk);
          pendingBytes += chunk.length;
          if (pendingBytes >= 1 << 20) await flush();
          const now = Date.now();
          if (now - last > 100) {
            last = now;
            onProgress("downloading", w.offset + pendingBytes);
          }
        }
        await flush();
      } catch (e) {
        if (this.opts.signal?.aborted) throw this.opts.signal.reason;
        if (e instanceof MicroError) throw e; // too many bytes: refused, not retried
        await flush(); // what arrived before the break counts for the resume
        const why = ac.signal.aborted
          ? `no data for ${stallMs} ms`
          : String((e as Error).message ?? e).replace(/\s+/g, " ");
        return {
          error: pullError(`blob ${desc.digest}: download broke off at byte ${w.offset}: ${why}`),
          final: false,
        };
      }
      if (w.offset < desc.size) {
        return {
          error: pullError(
            `blob ${desc.digest}: connection closed at byte ${w.offset} of ${desc.size}`,
          ),
          final: false,
        };
      }
      return undefined;
    } finally {
      clearTimeout(stall);
    }
  }

  /**
   * GET /v2/ with the challenge flow and these credentials: resolves when the registry
   * accepts them, throws a one-line error when it does not.
   */
  async checkLogin(): Promise<void> {
    await this.ping();
    const res = await this.request("", {});
    await res.body?.cancel().catch(() => {});
    if (res.status === 200) return;
    if (res.status === 401) {
      throw new MicroError(`login: ${this.domain}: wrong username or password`, {
        hint: "check them and try again",
      });
    }
    await this.fail("GET", "", res);
  }
}

function checkDescriptor(d: unknown, what: string): Descriptor {
  const x = d as Descriptor;
  if (
    typeof x !== "object" || x === null || typeof x.mediaType !== "string" ||
    typeof x.digest !== "string" || typeof x.size !== "number" || !Number.isSafeInteger(x.size) ||
    x.size < 0
  ) {
    throw pullError(`${what}: not a valid descriptor (mediaType, digest, size)`);
  }
  parseDigest(x.digest, `${what} digest`);
  return x;
}

/** Validates an image manifest's shape and media types. */
export function checkImageManifest(j: unknown, digest: string): ImageManifest {
  const m = j as ImageManifest;
  if (typeof m !== "object" || m === null || m.schemaVersion !== 2) {
    throw pullError(`manifest ${digest}: schemaVersion is not 2`);
  }
  const config = checkDescriptor(m.config, `manifest ${digest}: config`);
  if (!CONFIG_TYPES.has(config.mediaType)) {
    throw pullError(
      `manifest ${digest}: unknown config media type ${JSON.stringify(config.mediaType)}`,
      "not a container image (an artifact or a signature?)",
    );
  }
  if (!Array.isArray(m.layers)) throw pullError(`manifest ${digest}: no layers list`);
  m.layers.forEach((l, i) => {
    const d = checkDescriptor(l, `manifest ${digest}: layer ${i}`);
    if (!LAYER_TYPES.has(d.mediaType)) {
      throw pullError(
        `manifest ${digest}: layer ${i} (${d.digest}): unknown media type ${
          JSON.stringify(d.mediaType)
        }`,
        "micro unpacks tar layers, plain, gzip or zstd",
      );
    }
  });
  return m;
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw pullError(`${what}: not valid JSON: ${(e as Error).message}`);
  }
}

/** Runs `fn` over `items`, at most `n` at a time; the first failure aborts the rest. */
async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

/**
 * Pulls an image into the blob store: the manifest (and the index it came from), the config
 * and every layer, each checked against its digest. Resolves with what the lead's image
 * record needs; everything it names is in `blobs`.
 */
export async function pullImage(
  ref: Reference,
  opts: PullOptions,
  blobs: BlobStore,
): Promise<PulledImage> {
  const want: Platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const client = new RegistryClient(ref.domain, opts);
  const progress = (e: ProgressEvent) => opts.onProgress?.(e);
  try {
    const first = await client.manifest(ref.path, ref.digest ?? ref.tag ?? "latest");
    let m = first;
    let indexDigest: string | undefined;
    if (INDEX_TYPES.has(first.mediaType)) {
      indexDigest = first.digest;
      const index = parseJson(first.bytes, `image index ${first.digest}`) as {
        manifests?: PlatformEntry[];
      };
      if (!Array.isArray(index?.manifests)) {
        throw pullError(`image index ${first.digest}: no manifests list`);
      }
      const images = index.manifests.filter((d) =>
        typeof d === "object" && d !== null && (!d.mediaType || MANIFEST_TYPES.has(d.mediaType))
      );
      const chosen = choosePlatform(images, want, `image index of ${formatReference(ref)}`);
      parseDigest(chosen.digest, "index entry digest");
      await blobs.put(first.digest, first.bytes);
      progress({ digest: first.digest, kind: "index", state: "done", done: first.bytes.length });
      m = await client.manifest(ref.path, chosen.digest);
      if (m.digest !== chosen.digest) throw new DigestMismatch(chosen.digest, m.digest, 0);
    }
    if (!MANIFEST_TYPES.has(m.mediaType)) {
      throw pullError(
        `manifest ${m.digest}: unknown media type ${JSON.stringify(m.mediaType)}`,
        "micro pulls OCI and Docker v2 image manifests and indexes",
      );
    }
    const manifest = checkImageManifest(parseJson(m.bytes, `manifest ${m.digest}`), m.digest);
    await blobs.put(m.digest, m.bytes);
    progress({ digest: m.digest, kind: "manifest", state: "done", done: m.bytes.length });

    const cfg = manifest.config;
    if (cfg.size > CONFIG_MAX) {
      throw pullError(`config ${cfg.digest}: ${cfg.size} bytes, more than ${CONFIG_MAX} allowed`);
    }
    await client.blob(
      ref.path,
      cfg,
      blobs,
      (state, done, message) =>
        progress({ digest: cfg.digest, kind: "config", state, done, total: cfg.size, message }),
    );
    const config = await blobs.readJson<ImageConfig>(cfg.digest, CONFIG_MAX);
    if (typeof config !== "object" || config === null || Array.isArray(config)) {
      throw pullError(`config ${cfg.digest}: not a JSON object`);
    }
    const imagePlatform = config.os && config.architecture
      ? formatPlatform({
        os: config.os,
        architecture: config.architecture,
        variant: config.variant,
      })
      : formatPlatform(want);
    if (!indexDigest && config.os && config.architecture && !platformMatches(config, want)) {
      throw pullError(
        `${formatReference(ref)} is an image for ${imagePlatform}, not ${formatPlatform(want)}`,
        `pull it with --platform ${imagePlatform} to take it anyway`,
      );
    }

    for (const l of manifest.layers) {
      progress({ digest: l.digest, kind: "layer", state: "waiting", done: 0, total: l.size });
    }
    // One download per digest even when a manifest lists a layer twice.
    const unique = [...new Map(manifest.layers.map((l) => [l.digest, l])).values()];
    await pool(
      unique,
      opts.concurrency ?? 3,
      (l) =>
        client.blob(
          ref.path,
          l,
          blobs,
          (state, done, message) =>
            progress({ digest: l.digest, kind: "layer", state, done, total: l.size, message }),
        ),
    );

    return {
      ref: formatReference(ref),
      manifestDigest: m.digest,
      ...(indexDigest ? { indexDigest } : {}),
      manifest,
      config,
      configDigest: cfg.digest,
      layers: manifest.layers.map((l) => ({
        digest: l.digest,
        mediaType: l.mediaType,
        size: l.size,
      })),
      platform: imagePlatform,
    };
  } finally {
    client.close();
  }
}

/** A registry name as `micro login` takes it: `docker.io`, `host:5000`, or a URL. */
export function loginDomain(registry: string): string {
  const d = authKey(registry);
  if (!d || !/^[a-z0-9.\-\[\]:]+$/.test(d)) {
    throw new MicroError(`login: invalid registry ${JSON.stringify(registry)}`, {
      hint: "name it as HOST[:PORT], e.g. registry.example:5000 or docker.io",
    });
  }
  return d;
}

export interface LoginOptions extends Omit<RegistryOptions, "credentials" | "dockerConfig"> {
  /** Where to store the login (default `defaultAuthFile()`). */
  authFile?: string;
}

/**
 * Checks `creds` against the registry (GET /v2/ through the challenge flow) and stores them
 * in micro's auth file (0600). Never prints or logs the password. Returns the key stored.
 */
export async function login(
  registry: string,
  creds: Credentials,
  opts: LoginOptions = {},
): Promise<string> {
  const domain = loginDomain(registry);
  if (!creds.username || creds.username.includes(":")) {
    throw new MicroError("login: the username must be non-empty and without a colon");
  }
  const client = new RegistryClient(domain, { ...opts, credentials: creds, dockerConfig: null });
  try {
    await client.checkLogin();
  } catch (e) {
    // the registry client speaks of pulls; this is a login
    if (e instanceof MicroError && e.fields.phase === "pull") {
      throw new MicroError(e.message, { ...e.fields, phase: "login" });
    }
    throw e;
  } finally {
    client.close();
  }
  await storeCredentials(domain, creds, opts.authFile ?? defaultAuthFile());
  return domain;
}

/** Removes a registry's login from micro's auth file; false when there was none. */
export async function logout(registry: string, opts: { authFile?: string } = {}): Promise<boolean> {
  return await storeCredentials(
    loginDomain(registry),
    undefined,
    opts.authFile ?? defaultAuthFile(),
  );
}
