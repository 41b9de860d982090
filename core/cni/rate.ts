/**
 * Rates and bursts in tc's units (tc(8) "PARAMETERS"), turned into the bits the CNI
 * `bandwidth` capability takes (CONVENTIONS.md: `ingressRate`/`egressRate` in bit/s,
 * `ingressBurst`/`egressBurst` in bits).
 */

const RATE_UNITS: Record<string, number> = {
  "": 1,
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  kibit: 1024,
  mibit: 1024 ** 2,
  gibit: 1024 ** 3,
  tibit: 1024 ** 4,
  // tc's "bps" is bytes per second.
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
  tbps: 8e12,
  kibps: 8 * 1024,
  mibps: 8 * 1024 ** 2,
  gibps: 8 * 1024 ** 3,
  tibps: 8 * 1024 ** 4,
};

/** tc's sizes: a bare number and `b` are bytes; k, m, g are powers of 1024 (get_size). */
const SIZE_UNITS: Record<string, number> = {
  "": 8,
  b: 8,
  k: 8 * 1024,
  kb: 8 * 1024,
  m: 8 * 1024 ** 2,
  mb: 8 * 1024 ** 2,
  g: 8 * 1024 ** 3,
  gb: 8 * 1024 ** 3,
  bit: 1,
  kbit: 1024,
  mbit: 1024 ** 2,
  gbit: 1024 ** 3,
};

/** The slowest rate a tbf can keep (a byte a second). */
export const MIN_RATE = 8;
/** Beyond a terabit a second the rate is a typo. */
export const MAX_RATE = 1e12;
/** A bucket smaller than one full Ethernet frame would never let that frame pass. */
export const MIN_BURST = 1514 * 8;
/** The plugin keeps the burst in bytes as a uint32. */
export const MAX_BURST = (2 ** 32 - 1) * 8;

function parse(text: string, units: Record<string, number>): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(String(text));
  if (!m) return undefined;
  const unit = units[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(m[1]) * unit);
}

/** A rate (`10mbit`, `512kbit`, `1gbit`, bare bit/s) in bit/s, or why it is not one. */
export function parseRate(text: string | number): number | string {
  const bits = parse(String(text), RATE_UNITS);
  if (bits === undefined) {
    return `"${text}" is not a rate: a number with a tc unit, e.g. 10mbit, 512kbit, 1gbit ` +
      "(a bare number is bit/s)";
  }
  if (bits < MIN_RATE) return `"${text}" is below the slowest rate, 8bit (a byte a second)`;
  if (bits > MAX_RATE) return `"${text}" is above 1tbit`;
  return bits;
}

/** A burst (`32kb`, `256kbit`, bare bytes as tc) in bits, or why it is not one. */
export function parseBurst(text: string | number): number | string {
  const bits = parse(String(text), SIZE_UNITS);
  if (bits === undefined) {
    return `"${text}" is not a size: a number with a tc unit, e.g. 32kb, 256kbit ` +
      "(a bare number is bytes)";
  }
  if (bits < MIN_BURST) return `"${text}" is smaller than one packet (1514 bytes)`;
  if (bits > MAX_BURST) return `"${text}" is above 4gb`;
  return bits;
}

/**
 * The burst when none is given: 100 ms at the rate, at least 32 KiB. The bucket lets a
 * short burst through at full speed and then holds the rate; 100 ms keeps a measurement
 * over seconds within a few percent, and 32 KiB lets slow rates pass a full TCP window
 * without losing every burst of it. (Kubernetes gives 2^31 bits, which lets the first
 * 256 MiB through unshaped.)
 */
export function defaultBurst(rate: number): number {
  return Math.min(MAX_BURST, Math.max(Math.round(rate / 10), 32 * 1024 * 8));
}

/** `5mbit`-style text for messages and the plan: the largest SI unit that divides evenly. */
export function formatRate(bits: number): string {
  for (const [unit, n] of [["gbit", 1e9], ["mbit", 1e6], ["kbit", 1e3]] as const) {
    if (bits >= n && bits % n === 0) return `${bits / n}${unit}`;
  }
  return `${bits}bit`;
}
