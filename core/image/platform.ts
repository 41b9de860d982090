/**
 * Platforms (`linux/amd64`, `linux/arm64/v8`) and the choice of a manifest in an image index
 * or a Docker manifest list, as containerd's platforms matcher does it: names normalised
 * (aarch64 is arm64, x86_64 is amd64), arm64's variant v8 the same as none.
 */
import { MicroError } from "../errors.ts";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** An index entry as far as the choice needs it. */
export interface PlatformEntry {
  digest: string;
  mediaType?: string;
  platform?: { os?: string; architecture?: string; variant?: string };
}

const ARCH_ALIASES: Record<string, string> = {
  "x86_64": "amd64",
  "x86-64": "amd64",
  "aarch64": "arm64",
  "armhf": "arm",
  "armel": "arm",
  "i386": "386",
  "i686": "386",
};

/** Normalises names and the variant the way containerd compares them. */
export function normalisePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const raw = p.architecture.toLowerCase();
  const architecture = ARCH_ALIASES[raw] ?? raw;
  let variant = p.variant?.toLowerCase() || undefined;
  if (raw === "armhf" && !variant) variant = "v7";
  if (raw === "armel" && !variant) variant = "v6";
  if (architecture === "arm64" && (variant === "v8" || variant === "8")) variant = undefined;
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  if (architecture === "arm" && variant && /^\d+$/.test(variant)) variant = `v${variant}`;
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** `linux/arm64`, `linux/arm/v7`, `arm64` (os linux): a one-line error otherwise. */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.some((p) => !/^[A-Za-z0-9_.-]+$/.test(p)) || parts.length > 3) {
    throw new MicroError(`invalid platform ${JSON.stringify(s)}`, {
      hint: "write it as OS/ARCH[/VARIANT], e.g. linux/arm64",
    });
  }
  if (parts.length === 1) return normalisePlatform({ os: "linux", architecture: parts[0] });
  return normalisePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
}

/** The platform this process runs on (linux/amd64 or linux/arm64). */
export function hostPlatform(): Platform {
  return normalisePlatform({ os: Deno.build.os, architecture: Deno.build.arch });
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x).join("/");
}

/** Whether an entry's platform is `want` (after normalising both). */
export function platformMatches(entry: PlatformEntry["platform"], want: Platform): boolean {
  if (!entry?.os || !entry.architecture) return false;
  const e = normalisePlatform({
    os: entry.os,
    architecture: entry.architecture,
    variant: entry.variant,
  });
  const w = normalisePlatform(want);
  if (e.os !== w.os || e.architecture !== w.architecture) return false;
  return (e.variant ?? "") === (w.variant ?? "") || (!w.variant && !e.variant);
}

/**
 * Picks the manifest for `want` from an index's entries: the first that matches. Without
 * one, a one-line error that lists the platforms the index has.
 */
export function choosePlatform(
  entries: PlatformEntry[],
  want: Platform,
  what = "image index",
): PlatformEntry {
  const found = entries.find((m) => platformMatches(m.platform, want));
  if (found) return found;
  const have = entries
    .filter((m) => m.platform?.os && m.platform.architecture && m.platform.os !== "unknown")
    .map((m) => formatPlatform(normalisePlatform(m.platform as Platform)));
  const list = have.length ? [...new Set(have)].join(", ") : "none";
  throw new MicroError(
    `no manifest for ${formatPlatform(want)} in the ${what}; it has: ${list}`,
    { hint: "choose one of those with --platform" },
  );
}
