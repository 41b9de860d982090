/**
 * The one way a NAME, a full ID or a unique ID prefix is taken to a container, as Docker
 * does it: a full id first, then a name, then a prefix of an id. Both places micro keeps
 * containers in use it: the store's records (core/store/containers.ts resolveContainer)
 * and the state root's runs (core/exec/find.ts findContainer). No I/O here: the caller
 * says how to look up an id, a name, and how to list every container.
 */
import { MicroError } from "../errors.ts";

/** A container as the resolver sees it: its 64-hex id, its name and what the caller keeps. */
export interface Candidate<T> {
  id: string;
  name: string;
  value: T;
}

export interface Lookup<T> {
  /** The container with this full id, or null. */
  byId(id: string): T | null;
  /** The container of this name, or null. */
  byName(name: string): T | null;
  /** Every container (only listed for an id prefix). */
  all(): Candidate<T>[];
}

const FULL_ID = /^[0-9a-f]{64}$/;
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const HEX = /^[0-9a-f]+$/;

/** Whether `ref` may name a container at all (no `/`, no leading `.` or `-`). */
export function isContainerName(ref: string): boolean {
  return NAME.test(ref);
}

export function noSuchContainer(ref: string): MicroError {
  return new MicroError(`no such container: ${ref}`, { hint: 'see "micro ps -a"' });
}

/**
 * The container `ref` names; one-line errors otherwise. An ambiguous prefix is refused
 * with the containers it matches (name and short id), never one of them picked.
 */
export function resolveRef<T>(ref: string, lookup: Lookup<T>): T {
  if (FULL_ID.test(ref)) {
    const hit = lookup.byId(ref);
    if (hit !== null) return hit;
  }
  if (NAME.test(ref)) {
    const hit = lookup.byName(ref);
    if (hit !== null) return hit;
  }
  if (HEX.test(ref)) {
    const hits = lookup.all().filter((c) => c.id.startsWith(ref));
    if (hits.length === 1) return hits[0].value;
    if (hits.length > 1) {
      const named = hits.map((c) => `${c.name} (${c.id.slice(0, 12)})`).sort();
      throw new MicroError(
        `container id prefix "${ref}" matches ${hits.length} containers: ${named.join(", ")}`,
        { hint: "give more of the id, or the name" },
      );
    }
  }
  throw noSuchContainer(ref);
}
