/**
 * Registry credentials and the WWW-Authenticate challenge.
 *
 * Credentials come from micro's auth file (written by `login`) and then Docker's
 * ~/.docker/config.json (`auths` entries with a base64 `auth`). Both files use Docker's
 * format, so a file written by one tool reads in the other. Docker's credential helpers
 * (`credsStore`, `credHelpers`) and identity tokens are not supported: an entry that only
 * names a helper is skipped, and pulls go on anonymously.
 *
 * Files are read as regular files with a size cap; micro's is written 0600 in a 0700
 * directory through a temporary file and a rename, and nothing here ever prints a secret.
 */
import { MicroError } from "../errors.ts";
import { DOCKER_HUB } from "./reference.ts";

export interface Credentials {
  username: string;
  password: string;
}

/** One challenge of a WWW-Authenticate header: `Bearer realm="...",service="..."`. */
export interface Challenge {
  /** Lower-cased: `bearer`, `basic`. */
  scheme: string;
  /** Parameter names lower-cased, values unquoted. */
  params: Record<string, string>;
}

const AUTH_FILE_MAX = 1 << 20;

/**
 * Parses a WWW-Authenticate header (RFC 7235): one or more challenges, each a scheme and
 * comma-separated `name=value` parameters, values a token or a quoted string with `\`
 * escapes. Malformed trailing text is ignored rather than guessed at.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const token = () => {
    const m = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(header.slice(i));
    if (!m) return "";
    i += m[0].length;
    return m[0];
  };
  while (i < n) {
    skipWs();
    while (i < n && header[i] === ",") {
      i++;
      skipWs();
    }
    const scheme = token();
    if (!scheme) break;
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    for (;;) {
      skipWs();
      const save = i;
      const name = token();
      skipWs();
      if (!name || header[i] !== "=") {
        // the next challenge's scheme (or a token68 we do not use)
        i = save;
        break;
      }
      i++;
      skipWs();
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header[i++];
        }
        i++;
      } else {
        value = token();
      }
      ch.params[name.toLowerCase()] = value;
      skipWs();
      if (header[i] === ",") {
        i++;
        continue;
      }
      break;
    }
  }
  return out;
}

/** Where micro keeps logins: $XDG_CONFIG_HOME/micro/auth.json, else ~/.config/micro/. */
export function defaultAuthFile(env = Deno.env.toObject()): string {
  const base = env.XDG_CONFIG_HOME || `${env.HOME || "/root"}/.config`;
  return `${base}/micro/auth.json`;
}

/** Docker's client config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function defaultDockerConfig(env = Deno.env.toObject()): string {
  return env.DOCKER_CONFIG
    ? `${env.DOCKER_CONFIG}/config.json`
    : `${env.HOME || "/root"}/.docker/config.json`;
}

/** The key a registry is stored under in micro's file: its domain, `docker.io` for the Hub. */
export function authKey(domain: string): string {
  const d = normaliseAuthKey(domain);
  return d === "index.docker.io" || d === "registry-1.docker.io" ? DOCKER_HUB : d;
}

/**
 * Docker's convertToHostname: `https://index.docker.io/v1/` and `http://host:5000/v2/` are
 * keys for `index.docker.io` and `host:5000`.
 */
function normaliseAuthKey(key: string): string {
  let k = key.trim().toLowerCase();
  k = k.replace(/^https?:\/\//, "");
  const slash = k.indexOf("/");
  if (slash >= 0) k = k.slice(0, slash);
  return k;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  [k: string]: unknown;
}

/** Reads an auth file: missing is empty; not a regular file, too large or bad JSON is an error. */
async function readAuthFile(path: string): Promise<AuthFile> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw new MicroError(`auth file ${path}: ${(e as { code?: string }).code ?? e}`);
  }
  try {
    const st = await f.stat();
    if (!st.isFile) throw new MicroError(`auth file ${path}: not a regular file`);
    if (st.size > AUTH_FILE_MAX) {
      throw new MicroError(`auth file ${path}: larger than ${AUTH_FILE_MAX} bytes`);
    }
    const buf = new Uint8Array(st.size);
    let n = 0;
    while (n < buf.length) {
      const r = await f.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    const text = new TextDecoder().decode(buf.subarray(0, n));
    if (text.trim() === "") return {};
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as AuthFile;
  } catch (e) {
    if (e instanceof MicroError) throw e;
    throw new MicroError(`auth file ${path}: not valid JSON: ${(e as Error).message}`, {
      hint: "fix or remove the file",
    });
  } finally {
    f.close();
  }
}

/**
 * Decodes one `auths` entry: a base64 `user:password` in `auth` (Docker), or `username` and
 * `password` fields. Undefined when it holds neither (a credential-helper placeholder).
 */
export function decodeAuthEntry(entry: unknown): Credentials | undefined {
  if (typeof entry !== "object" || entry === null) return undefined;
  const e = entry as AuthEntry;
  if (typeof e.auth === "string" && e.auth !== "") {
    let decoded: string;
    try {
      decoded = new TextDecoder().decode(Uint8Array.from(atob(e.auth), (c) => c.charCodeAt(0)));
    } catch {
      throw new MicroError("auth entry: `auth` is not valid base64");
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new MicroError("auth entry: `auth` does not decode to user:password");
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof e.username === "string" && typeof e.password === "string" && e.username) {
    return { username: e.username, password: e.password };
  }
  return undefined;
}

/** Finds the entry for a registry in one file's `auths`, keys normalised as Docker does. */
export function findAuth(file: AuthFile, domain: string): Credentials | undefined {
  const auths = file.auths;
  if (typeof auths !== "object" || auths === null) return undefined;
  const want = authKey(domain);
  // Docker Hub's traditional key first, then an exact match, then normalised keys.
  const exact = want === DOCKER_HUB ? ["https://index.docker.io/v1/", DOCKER_HUB] : [want];
  for (const k of exact) {
    if (Object.hasOwn(auths, k)) {
      const c = decodeAuthEntry(auths[k]);
      if (c) return c;
    }
  }
  for (const [k, v] of Object.entries(auths)) {
    if (authKey(k) === want) {
      const c = decodeAuthEntry(v);
      if (c) return c;
    }
  }
  return undefined;
}

export interface CredentialSources {
  /** micro's auth file (default `defaultAuthFile()`). */
  authFile?: string;
  /** Docker's config.json (default `defaultDockerConfig()`); `null` to skip it. */
  dockerConfig?: string | null;
}

/** Credentials for a registry: micro's file first, then Docker's; undefined means anonymous. */
export async function lookupCredentials(
  domain: string,
  src: CredentialSources = {},
): Promise<Credentials | undefined> {
  const own = await readAuthFile(src.authFile ?? defaultAuthFile());
  const c = findAuth(own, domain);
  if (c) return c;
  if (src.dockerConfig === null) return undefined;
  return findAuth(await readAuthFile(src.dockerConfig ?? defaultDockerConfig()), domain);
}

/** Stores (or with `creds` undefined, removes) a registry's entry in micro's auth file. */
export async function storeCredentials(
  domain: string,
  creds: Credentials | undefined,
  authFile = defaultAuthFile(),
): Promise<boolean> {
  const file = await readAuthFile(authFile);
  const auths: Record<string, AuthEntry> = typeof file.auths === "object" && file.auths !== null
    ? { ...file.auths }
    : {};
  const key = authKey(domain);
  let changed = false;
  for (const k of Object.keys(auths)) {
    if (authKey(k) === key) {
      delete auths[k];
      changed = true;
    }
  }
  if (creds) {
    const raw = new TextEncoder().encode(`${creds.username}:${creds.password}`);
    auths[key] = { auth: btoa(String.fromCharCode(...raw)) };
    changed = true;
  }
  if (!changed) return false;
  const dir = authFile.slice(0, authFile.lastIndexOf("/")) || "/";
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${authFile}.tmp-${Deno.pid}`;
    const data = new TextEncoder().encode(JSON.stringify({ ...file, auths }, null, 2) + "\n");
    await Deno.remove(tmp).catch(() => {}); // left by a killed login of the same pid
    using f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
    let done = 0;
    while (done < data.length) done += await f.write(data.subarray(done));
    await f.syncData();
    await Deno.rename(tmp, authFile);
  } catch (e) {
    throw new MicroError(`auth file ${authFile}: ${(e as { code?: string }).code ?? e}`, {
      hint: "check the directory's owner and permissions",
    });
  }
  return true;
}

/** `Basic <base64(user:password)>`. */
export function basicHeader(c: Credentials): string {
  const raw = new TextEncoder().encode(`${c.username}:${c.password}`);
  return `Basic ${btoa(String.fromCharCode(...raw))}`;
}
