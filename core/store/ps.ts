/**
 * `micro ps` output, as `docker ps` prints it: a table with 3 spaces between columns
 * (Go's tabwriter, minimum width 10), times as Docker's HumanDuration, the command quoted
 * and cut to 20 characters unless `--no-trunc`.
 */
import { MicroError } from "../errors.ts";
import type { ContainerRecord } from "./containers.ts";
import type { Status } from "./live.ts";

export interface PsRow {
  rec: ContainerRecord;
  status: Status;
}

/** Docker's units.HumanDuration. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

function ago(iso: string | undefined, now: number): string {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) ? "" : `${humanDuration(Math.max(0, now - t))} ago`;
}

/** The STATUS column: `Up 5 seconds`, `Exited (0) 2 minutes ago`, `Created`. */
export function statusText(row: PsRow, now: number): string {
  const { status, rec } = row;
  if (status.state === "running") {
    const up = `Up ${humanDuration(Math.max(0, now - Date.parse(rec.startedAt ?? rec.created)))}`;
    return status.paused ? `${up} (Paused)` : up;
  }
  if (status.state === "created") return "Created";
  if (status.exitCode === null) return "Exited (unknown)";
  const when = ago(status.finishedAt, now);
  return `Exited (${status.exitCode})${when ? ` ${when}` : ""}`;
}

/** Docker's Ellipsis: at most `n` characters, the last one `…` when cut. */
function ellipsis(s: string, n: number): string {
  const chars = [...s];
  return chars.length <= n ? s : chars.slice(0, n - 1).join("") + "…";
}

export function formatPs(
  rows: PsRow[],
  opts: { quiet: boolean; trunc: boolean; now: number },
): string {
  const sorted = [...rows].sort((a, b) =>
    (Date.parse(b.rec.created) || 0) - (Date.parse(a.rec.created) || 0)
  );
  const id = (r: PsRow) => opts.trunc ? r.rec.id.slice(0, 12) : r.rec.id;
  if (opts.quiet) return sorted.map((r) => `${id(r)}\n`).join("");
  const table = [["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]];
  for (const r of sorted) {
    const image = r.rec.image?.name ?? r.rec.image?.path ?? "-";
    const command = r.rec.command.join(" ");
    table.push([
      id(r),
      image,
      JSON.stringify(opts.trunc ? ellipsis(command, 20) : command),
      ago(r.rec.created, opts.now),
      statusText(r, opts.now),
      r.rec.name,
    ]);
  }
  const widths = table[0].map((_, c) =>
    Math.max(10, ...table.map((row) => [...row[c]].length + 3))
  );
  return table.map((row) =>
    row.map((cell, c) =>
      c === row.length - 1 ? cell : cell + " ".repeat(widths[c] - [...cell].length)
    )
      .join("") + "\n"
  ).join("");
}

/**
 * `micro ps --format json`: one JSON object per container and line, with Docker's field
 * names (`docker ps --format json`), newest first.
 */
export function formatPsJson(rows: PsRow[], opts: { trunc: boolean; now: number }): string {
  const sorted = [...rows].sort((a, b) =>
    (Date.parse(b.rec.created) || 0) - (Date.parse(a.rec.created) || 0)
  );
  return sorted.map((r) =>
    JSON.stringify({
      ID: opts.trunc ? r.rec.id.slice(0, 12) : r.rec.id,
      Names: r.rec.name,
      Image: r.rec.image?.name ?? r.rec.image?.path ?? "",
      Command: JSON.stringify(r.rec.command.join(" ")),
      CreatedAt: r.rec.created,
      RunningFor: ago(r.rec.created, opts.now),
      State: r.status.state,
      Status: statusText(r, opts.now),
      ExitCode: r.status.exitCode,
      Labels: Object.entries(r.rec.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(","),
    }) + "\n"
  ).join("");
}

/**
 * `micro ps --filter label=KEY` (the label is set) or `label=KEY=VALUE` (set to VALUE), as
 * Docker's; several filters must all match. Other filters are refused.
 */
export function labelFilter(filter: string): (rec: ContainerRecord) => boolean {
  const m = /^label=([^=]+)(?:=(.*))?$/s.exec(filter);
  if (!m) {
    throw new MicroError(`unsupported filter "${filter}": expected label=KEY or label=KEY=VALUE`, {
      hint: 'see "micro ps --help"',
    });
  }
  const [, key, value] = m;
  return (rec) => {
    const labels = rec.labels ?? {};
    return Object.hasOwn(labels, key) && (value === undefined || labels[key] === value);
  };
}
