/**
 * HTTP to one registry: which CAs to trust and how a request goes out.
 *
 * TLS trusts Deno's built-in roots plus the system bundle (/etc/ssl/certs/...) plus the
 * registry's own CA directory as Docker's certs.d has it (DIR/HOST:PORT/*.crt, in
 * /etc/docker/certs.d, /etc/containers/certs.d and micro's own). With `tlsVerify: false` the
 * certificate is not checked at all (node:https with rejectUnauthorized off, since Deno's
 * fetch has no such switch). Redirects are followed here, by hand, so an Authorization
 * header never follows a redirect to another host.
 */
import { MicroError } from "../errors.ts";
import { apiHost } from "./reference.ts";

export interface TlsOptions {
  /** false: do not check the registry's certificate (and allow plain http), as podman. */
  tlsVerify?: boolean;
  /** Directories holding HOST:PORT/*.crt CA files; default `defaultCertDirs()`. */
  certDirs?: string[];
}

/** One request: the fetch subset the registry client needs. */
export type Transport = (
  url: URL,
  init: { method?: string; headers?: Headers; signal?: AbortSignal },
) => Promise<Response>;

const SYSTEM_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
  "/etc/pki/tls/certs/ca-bundle.crt", // Fedora, RHEL
  "/etc/ssl/ca-bundle.pem", // openSUSE
  "/etc/ssl/cert.pem",
];
const PEM_MAX = 4 << 20;

/** Docker's and podman's certs.d, then micro's (/etc/micro/certs.d as root, else ~/.config). */
export function defaultCertDirs(env = Deno.env.toObject(), uid = Deno.uid()): string[] {
  const own = uid === 0
    ? "/etc/micro/certs.d"
    : `${env.XDG_CONFIG_HOME || `${env.HOME || "/"}/.config`}/micro/certs.d`;
  return ["/etc/docker/certs.d", "/etc/containers/certs.d", own];
}

async function readCapped(path: string): Promise<string | undefined> {
  try {
    using f = await Deno.open(path, { read: true });
    const st = await f.stat();
    if (!st.isFile || st.size > PEM_MAX) return undefined;
    const buf = new Uint8Array(st.size);
    let n = 0;
    while (n < buf.length) {
      const r = await f.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    return new TextDecoder().decode(buf.subarray(0, n));
  } catch {
    return undefined;
  }
}

/** The CA certificates (PEM texts) a registry's certs.d directories hold. */
export async function registryCaCerts(domain: string, certDirs: string[]): Promise<string[]> {
  const out: string[] = [];
  const hosts = [...new Set([domain, apiHost(domain)])];
  for (const dir of certDirs) {
    for (const host of hosts) {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(`${dir}/${host}`));
      } catch {
        continue;
      }
      for (const e of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
        if (!e.name.endsWith(".crt")) continue;
        const pem = await readCapped(`${dir}/${host}/${e.name}`);
        if (pem?.includes("-----BEGIN CERTIFICATE-----")) out.push(pem);
      }
    }
  }
  return out;
}

async function systemCaBundle(): Promise<string | undefined> {
  for (const p of SYSTEM_BUNDLES) {
    const pem = await readCapped(p);
    if (pem?.includes("-----BEGIN CERTIFICATE-----")) return pem;
  }
  return undefined;
}

/** A transport for one registry, and its `close` (the HTTP client holds connections). */
export interface RegistryTransport {
  fetch: Transport;
  close(): void;
}

/** The transport for `domain` with these TLS options. */
export async function makeTransport(domain: string, tls: TlsOptions): Promise<RegistryTransport> {
  if (tls.tlsVerify === false) return { fetch: insecureFetch, close() {} };
  const caCerts = await registryCaCerts(domain, tls.certDirs ?? defaultCertDirs());
  const system = await systemCaBundle();
  if (system) caCerts.unshift(system);
  const client = Deno.createHttpClient({ caCerts });
  return {
    fetch: (url, init) => fetch(url, { ...init, client, redirect: "manual" }),
    close: () => client.close(),
  };
}

/** https without certificate checks (node:https), plain fetch for http. */
const insecureFetch: Transport = async (url, init) => {
  if (url.protocol !== "https:") return await fetch(url, { ...init, redirect: "manual" });
  const https = await import("node:https");
  const { Readable } = await import("node:stream");
  return await new Promise<Response>((resolve, reject) => {
    const headers: Record<string, string> = {};
    init.headers?.forEach((v, k) => headers[k] = v);
    const req = https.request(url, {
      method: init.method ?? "GET",
      headers,
      rejectUnauthorized: false,
      signal: init.signal,
    }, (res) => {
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) v.forEach((x) => h.append(k, x));
        else if (v !== undefined) h.set(k, String(v));
      }
      const status = res.statusCode ?? 502;
      const noBody = init.method === "HEAD" || status === 204 || status === 304;
      if (noBody) res.resume();
      const body = noBody ? null : Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
      resolve(new Response(body, { status, statusText: res.statusMessage, headers: h }));
    });
    req.on("error", reject);
    req.end();
  });
};

/**
 * A fetch error as one short line: Deno's messages nest the URL and several causes; keep the
 * innermost cause and say what kind of failure it is.
 */
export function networkErrorLine(e: unknown): { what: string; hint: string } {
  // fetch throws "fetch failed" with the real story in `cause`.
  let x = e as { message?: string; cause?: unknown } | undefined;
  let raw = "";
  for (let depth = 0; x && depth < 5; depth++) {
    if (x.message && x.message !== "fetch failed") raw = x.message;
    x = x.cause as typeof x;
  }
  raw = (raw || String((e as Error)?.message ?? e)).replace(/\s+/g, " ");
  const inner = raw.replace(/^.*error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "").replace(/ \(os error \d+\)$/, "");
  if (
    /certificate|UnknownIssuer|CertNotValid|NotValidForName|self.signed|unable to verify/i.test(raw)
  ) {
    return {
      what: `TLS: ${inner}`,
      hint:
        "the registry's certificate is not trusted: put its CA in /etc/docker/certs.d/HOST:PORT/ca.crt, or use --tls-verify=false",
    };
  }
  if (/refused/i.test(raw)) {
    return { what: "connection refused", hint: "is the registry running at that address?" };
  }
  if (/dns|lookup|resolve|Name or service not known|failed to lookup/i.test(raw)) {
    return { what: `cannot resolve the host: ${inner}`, hint: "check the name and the network" };
  }
  if (/timed? ?out|TimeoutError/i.test(raw)) {
    return { what: "timed out", hint: "check the network and the registry's address" };
  }
  return { what: inner, hint: "check the network and the registry's address" };
}

/** A request that got no answer; `tls` when the certificate was refused (not worth a retry). */
export class NetworkError extends MicroError {
  constructor(message: string, hint: string, readonly tls: boolean) {
    super(message, { phase: "pull", hint });
  }
}

/** Wraps a network failure in a one-line error naming the request. */
export function networkError(method: string, url: URL, e: unknown): NetworkError {
  const { what, hint } = networkErrorLine(e);
  return new NetworkError(`${method} ${url.href}: ${what}`, hint, what.startsWith("TLS: "));
}
