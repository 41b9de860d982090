/**
 * Timestamps without a Date object: a process's first `new Date()` costs about 1 ms (V8 sets
 * up its date cache, the host's time zone included, bench/README.md nineteenth session),
 * which a run paid only to stamp its records. `Date.now()` does not.
 */

const DAY_MS = 86_400_000;

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/**
 * `ms` (milliseconds since the epoch, default now) as `Date.prototype.toISOString` writes it,
 * `2026-12-07T07:00:27.777Z`, for the years 0 to 9999 (a clock outside them falls back to
 * Date's own, with its sign and six digits).
 */
export function isoTime(ms: number = Date.now()): string {
  // 0000-01-01 and 10000-01-01 in epoch milliseconds
  if (!(ms >= -62167219200000 && ms < 253402300800000)) return new Date(ms).toISOString();
  const days = Math.floor(ms / DAY_MS);
  let rem = ms - days * DAY_MS;
  const hour = Math.floor(rem / 3_600_000);
  rem -= hour * 3_600_000;
  const minute = Math.floor(rem / 60_000);
  rem -= minute * 60_000;
  const second = Math.floor(rem / 1000);
  const milli = rem - second * 1000;
  // The proleptic Gregorian date of a day count (Howard Hinnant's civil_from_days).
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:` +
    `${pad(second, 2)}.${pad(milli, 3)}Z`;
}
