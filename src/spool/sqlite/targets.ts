/**
 * The spool's addresses (table `targets`) with their depth and payload bytes. The totals on disk
 * change in the same transaction as the rows they count (writeDeltas); the totals in memory follow
 * only once that transaction has committed (applyDeltas), so a failed commit changes neither.
 */
import type { Statements } from './statements.js';

export interface Target {
  id: number;
  address: string;
  depth: number;
  bytes: number;
  /** When the last reading for it was appended (ms): an empty target idle long enough is removed. */
  usedAt: number;
}

/** What one transaction changed, per target id. */
export type Deltas = Map<number, { depth: number; bytes: number }>;

export function addDelta(deltas: Deltas, target: number, depth: number, bytes: number): void {
  const delta = deltas.get(target);
  if (delta === undefined) deltas.set(target, { depth, bytes });
  else {
    delta.depth += depth;
    delta.bytes += bytes;
  }
}

export class Targets {
  readonly #byId = new Map<number, Target>();
  readonly #byAddress = new Map<string, Target>();

  byAddress(address: string): Target | undefined {
    return this.#byAddress.get(address);
  }

  byId(id: number): Target | undefined {
    return this.#byId.get(id);
  }

  all(): IterableIterator<Target> {
    return this.#byId.values();
  }

  totals(): { depth: number; bytes: number } {
    let depth = 0;
    let bytes = 0;
    for (const t of this.#byId.values()) {
      depth += t.depth;
      bytes += t.bytes;
    }
    return { depth, bytes };
  }

  /** Reads every target and its totals from disk (at start, and after another process committed). */
  load(sql: Statements, now: number): void {
    const rows = sql.get('targets').all() as Array<{ id: number; address: string; depth: number; bytes: number }>;
    for (const row of rows) {
      const known = this.#byId.get(row.id);
      if (known !== undefined) {
        known.depth = row.depth;
        known.bytes = row.bytes;
      } else {
        this.#add({ ...row, usedAt: now });
      }
    }
  }

  /** The target of `address`, created (inside the caller's transaction) when new; `created` collects new ones. */
  ensure(sql: Statements, address: string, now: number, created: Target[]): Target {
    const known = this.#byAddress.get(address);
    if (known !== undefined) return known;
    const id = Number(sql.get('addTarget').run(address).lastInsertRowid);
    const target: Target = { id, address, depth: 0, bytes: 0, usedAt: now };
    this.#add(target);
    created.push(target);
    return target;
  }

  /** Forgets targets in memory (created by a transaction that did not commit, or removed from disk). */
  forget(target: Target): void {
    this.#byId.delete(target.id);
    this.#byAddress.delete(target.address);
  }

  writeDeltas(sql: Statements, deltas: Deltas): void {
    const update = sql.get('totals');
    for (const [id, delta] of deltas) update.run(delta.depth, delta.bytes, id);
  }

  applyDeltas(deltas: Deltas): void {
    for (const [id, delta] of deltas) {
      const target = this.#byId.get(id);
      if (target === undefined) continue;
      target.depth += delta.depth;
      target.bytes += delta.bytes;
    }
  }

  #add(target: Target): void {
    this.#byId.set(target.id, target);
    this.#byAddress.set(target.address, target);
  }
}
