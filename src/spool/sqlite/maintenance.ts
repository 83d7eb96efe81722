/**
 * What the spool does every `maintenanceMs`, between commits: notice clock steps and the commits
 * of another process (`uplink dlq replay`), remove expired readings, let waiting writes try again,
 * checkpoint a WAL that waited (checkpoints.ts), give free pages back to the file system, make the disk reserve again, and forget what no reading
 * needs any more (old clock steps, addresses that have been empty for a while).
 */
import type { Checkpoints } from './checkpoints.js';
import type { SpoolContext } from './context.js';
import type { SqliteDeadLetterStore } from './dead-letters.js';
import type { WalDurability } from './durability.js';
import { isFatal, translateSqliteError } from './errors.js';
import type { Leasing } from './leasing.js';
import type { DiskReserve } from './reserve.js';
import type { WriteQueue } from './write-queue.js';

/** An address without readings for this long is removed from `targets` (and from memory). */
const EMPTY_TARGET_MS = 10 * 60_000;
/** Targets and clock steps are pruned every this many rounds. */
const PRUNE_EVERY = 60;

export interface MaintainedParts {
  checkpoints: Checkpoints;
  leasing: Leasing;
  writes: WriteQueue;
  reserve: DiskReserve;
  deadLetters: SqliteDeadLetterStore;
  durability: WalDurability;
}

export class Maintenance {
  readonly #ctx: SpoolContext;
  readonly #parts: MaintainedParts;
  #dataVersion = 0;
  #round = 0;

  constructor(ctx: SpoolContext, parts: MaintainedParts) {
    this.#ctx = ctx;
    this.#parts = parts;
  }

  /** At start: where the other process's commits are counted from. */
  start(): void {
    this.#dataVersion = this.#ctx.db.pragma('data_version', { simple: true }) as number;
  }

  run(): void {
    const ctx = this.#ctx;
    if (ctx.failure !== undefined) return;
    const { db, sql, targets, inFlight } = ctx;
    const { checkpoints, leasing, writes, reserve, deadLetters } = this.#parts;
    try {
      ctx.steps.check(sql);
      const version = db.pragma('data_version', { simple: true }) as number;
      if (version !== this.#dataVersion) {
        this.#dataVersion = version;
        targets.load(sql, ctx.clock.now());
        ctx.counters.deadLetterCount = deadLetters.count();
        // The other process's rows (dlq replay) become leasable once a sync of ours covers them.
        const upto = sql.maxSeq();
        this.#parts.durability.durable().then(() => {
          ctx.durableSeq = Math.max(ctx.durableSeq, upto);
          for (const t of targets.all()) if (t.depth > inFlight.leasedFor(t.id)) ctx.emit(t.address);
        }, () => { /* a failed sync stops the spool (durability.ts reports it) */ });
      }
      leasing.sweep();
      writes.retry();
      const free = db.pragma('freelist_count', { simple: true }) as number;
      // Give freed pages back bit by bit: the file shrinks without one long, write-heavy VACUUM.
      if (free > 256) {
        db.pragma('incremental_vacuum(256)');
        // The file only shrinks when the WAL is checkpointed; do it now rather than at the next burst.
        checkpoints.run();
      } else {
        checkpoints.due();
      }
      if (!writes.diskFull) void reserve.ensure();
      if (++this.#round % PRUNE_EVERY === 0) this.#prune();
    } catch (err) {
      const error = translateSqliteError(err, 'maintenance', ctx.options.dataDir);
      if (isFatal(error)) ctx.fail(error);
      else ctx.log.warn({ err: error.message }, 'spool maintenance failed; will retry');
    }
  }

  #prune(): void {
    const { db, sql, targets, inFlight, clock } = this.#ctx;
    const oldest = sql.get('oldest').get() as { seq: number } | undefined;
    const now = clock.now();
    const idle = [...targets.all()].filter((t) => t.depth === 0 && inFlight.leasedFor(t.id) === 0 && now - t.usedAt >= EMPTY_TARGET_MS);
    const removed = db.transaction(() => {
      this.#ctx.steps.prune(sql, oldest?.seq);
      const remove = sql.get('removeTarget');
      return idle.filter((target) => remove.run(target.id, target.id).changes === 1);
    })();
    // Memory follows only once the rows are gone; an append recreates the target when needed.
    for (const target of removed) {
      targets.forget(target);
      inFlight.forget(target.id);
    }
  }
}
