/**
 * Image references as Docker reads them (distribution/reference's grammar and its
 * normalisation): `alpine` is docker.io/library/alpine:latest, a first component with a `.`
 * or a `:`, `localhost`, or an upper-case letter is a registry host, `index.docker.io` is
 * docker.io. Parsing does no I/O; every error is one line that quotes the input.
 */
import { MicroError } from "../errors.ts";

/** A parsed, normalised image reference. */
export interface Reference {
  /** The registry as written (normalised): `docker.io`, `localhost:5000`, `[::1]:5000`. */
  domain: string;
  /** The repository inside the registry: `library/alpine`, `team/app`. */
  path: string;
  /** `latest` when neither a tag nor a digest was given; undefined with a digest alone. */
  tag?: string;
  /** `sha256:<64 hex>` (or another algorithm's digest), when given. */
  digest?: string;
}

/** Docker Hub's name and the host its API really lives on. */
export const DOCKER_HUB = "docker.io";
export const DOCKER_HUB_API = "registry-1.docker.io";

const MAX_NAME = 255;

// distribution/reference's regexp grammar (regexp.go), anchored where used.
const ALNUM = "[a-z0-9]+";
const SEPARATOR = "(?:[._]|__|[-]+)";
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const IPV6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
const HOST = `(?:${DOMAIN_NAME}|${IPV6})`;
const DOMAIN = `${HOST}(?::[0-9]+)?`;
const TAG = "[\\w][\\w.-]{0,127}";
const DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";

const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DIGEST_RE = new RegExp(`^${DIGEST}$`);
const HEX64_RE = /^[a-f0-9]{64}$/;

function invalid(input: string, why: string): MicroError {
  return new MicroError(`invalid image reference ${JSON.stringify(input)}: ${why}`, {
    hint: "write it as [REGISTRY/]NAME[:TAG][@DIGEST], e.g. alpine:3.20",
  });
}

/** Known digest algorithms and the length of their hex encoding. */
const DIGEST_HEX: Record<string, number> = { sha256: 64, sha512: 128 };

/**
 * Checks a digest string (`sha256:<64 lower-case hex>`, or sha512) and returns it split.
 * Throws a one-line error naming `what` otherwise.
 */
export function parseDigest(digest: string, what = "digest"): { algorithm: string; hex: string } {
  const i = digest.indexOf(":");
  const algorithm = digest.slice(0, i);
  const hex = digest.slice(i + 1);
  const len = DIGEST_HEX[algorithm];
  if (i < 0 || len === undefined) {
    throw new MicroError(
      `${what} ${JSON.stringify(digest)}: unsupported digest algorithm (sha256 or sha512)`,
    );
  }
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) {
    throw new MicroError(
      `${what} ${JSON.stringify(digest)}: not ${len} lower-case hex digits after "${algorithm}:"`,
    );
  }
  return { algorithm, hex };
}

/**
 * Parses and normalises an image reference the way `docker pull` does. A reference with
 * neither tag nor digest gets the tag `latest`; one with both keeps both (the digest wins
 * when pulling).
 */
export function parseReference(input: string): Reference {
  const s = input;
  if (s === "") throw invalid(s, "empty");
  if (/\s/.test(s)) throw invalid(s, "contains white space");
  if (HEX64_RE.test(s)) {
    throw invalid(s, "a 64-digit hexadecimal string is an image id, not a repository name");
  }

  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw invalid(s, `bad digest ${JSON.stringify(digest)}`);
    const alg = digest.slice(0, digest.indexOf(":"));
    if (DIGEST_HEX[alg] !== undefined) {
      try {
        parseDigest(digest);
      } catch {
        throw invalid(s, `bad ${alg} digest ${JSON.stringify(digest)}`);
      }
    }
  }

  // A tag follows the last ":" that comes after the last "/" (a ":" before it is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(s, `bad tag ${JSON.stringify(tag)}`);
  }
  if (rest === "") throw invalid(s, "no repository name");

  // splitDockerDomain (normalize.go)
  let domain: string;
  let path: string;
  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  if (
    slash < 0 ||
    (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)
  ) {
    domain = DOCKER_HUB;
    path = rest;
  } else {
    domain = first;
    path = rest.slice(slash + 1);
  }
  if (!DOMAIN_RE.test(domain)) throw invalid(s, `bad registry host ${JSON.stringify(domain)}`);
  if (domain === "index.docker.io") domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  if (path.toLowerCase() !== path) {
    throw invalid(s, `repository name ${JSON.stringify(path)} must be lower case`);
  }
  if (!PATH_RE.test(path)) throw invalid(s, `bad repository name ${JSON.stringify(path)}`);
  if (`${domain}/${path}`.length > MAX_NAME) {
    throw invalid(s, `the name is longer than ${MAX_NAME} characters`);
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** `domain/path[:tag][@digest]`: the normalised reference as Docker prints it fully. */
export function formatReference(ref: Reference): string {
  let s = `${ref.domain}/${ref.path}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/**
 * Docker's short form (`familiarString`): `alpine:3.20`, `team/app`, `localhost:5000/x:1`:
 * docker.io and library/ dropped.
 */
export function familiarReference(ref: Reference): string {
  let name = `${ref.domain}/${ref.path}`;
  if (ref.domain === DOCKER_HUB) {
    name = ref.path.startsWith("library/") && ref.path.split("/").length === 2
      ? ref.path.slice("library/".length)
      : ref.path;
  }
  let s = name;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The host:port the API is reached on (Docker Hub's API lives on registry-1.docker.io). */
export function apiHost(domain: string): string {
  return domain === DOCKER_HUB ? DOCKER_HUB_API : domain;
}

/** The host part of a domain, without port and brackets: `localhost`, `::1`, `10.0.0.1`. */
export function hostOnly(domain: string): string {
  if (domain.startsWith("[")) return domain.slice(1, domain.indexOf("]"));
  const c = domain.lastIndexOf(":");
  return c < 0 ? domain : domain.slice(0, c);
}

/** Loopback registries (localhost, 127.0.0.0/8, ::1) may be plain http, as Docker allows. */
export function isLoopback(domain: string): boolean {
  const h = hostOnly(domain).toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}
