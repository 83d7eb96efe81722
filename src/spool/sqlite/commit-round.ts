/**
 * One round of the group commit: the queued writes go into one transaction (transaction.ts), and
 * memory follows the disk only once it committed: totals, counters, the in-flight book, then the
 * callers (settlements at once, appends once the commit is durable, durability.ts, which is also
 * when the appended readings become leasable).
 *
 * When the commit fails:
 * - a full disk: appends wait (devices are held back: the `block` rule), and the settlements are
 *   committed on their own, so that what the broker accepted leaves the spool and makes room. If
 *   even that fails, the disk reserve is given back and the WAL checkpointed, and they are tried
 *   once more; if they still cannot commit they wait too, and leasing stops once MAX_SETTLING of
 *   them wait (context.ts), so nothing grows without bound;
 * - the storage failed (an I/O error, a corrupt file): the spool stops (the write queue calls
 *   ctx.fail with the writes back in the queue, for it to refuse them);
 * - anything else (the file busy beyond busy_timeout): the appends fail with a retryable error and
 *   the settled readings go back to the queue, to be sent again.
 */
import { GatewayError } from '../../core/errors.js';
import type { Checkpoints } from './checkpoints.js';
import type { SpoolContext } from './context.js';
import type { WalDurability } from './durability.js';
import { isFatal, translateSqliteError } from './errors.js';
import type { DiskReserve } from './reserve.js';
import { commitWrites } from './transaction.js';
import type { AppendOp, Outcome, WriteOp } from './write-ops.js';

/** What the write queue does after a round. */
export interface RoundResult {
  /** Writes that wait, in order, before anything queued since. */
  keep: WriteOp[];
  /** Try again after this long (a full disk). */
  retryMs?: number;
  /** The storage failed: `keep` holds every write of the round, to be refused. */
  fatal?: GatewayError;
}

export class CommitRound {
  readonly #ctx: SpoolContext;
  readonly #durability: WalDurability;
  readonly #reserve: DiskReserve;
  readonly #checkpoints: Checkpoints;
  #blockedSince: number | undefined;
  #diskFull = false;

  constructor(ctx: SpoolContext, durability: WalDurability, reserve: DiskReserve, checkpoints: Checkpoints) {
    this.#ctx = ctx;
    this.#durability = durability;
    this.#reserve = reserve;
    this.#checkpoints = checkpoints;
  }

  /** Appends wait for room (the quota under `block`, or a full disk). */
  get blocked(): boolean {
    return this.#blockedSince !== undefined;
  }

  get diskFull(): boolean {
    return this.#diskFull;
  }

  run(ops: WriteOp[]): RoundResult {
    const ctx = this.#ctx;
    try {
      ctx.steps.check(ctx.sql);
    } catch {
      // Recorded on a later commit (clock-steps.ts keeps the old frame meanwhile).
    }
    const first = commitWrites(ctx, ops);
    if (!(first instanceof GatewayError)) return { keep: this.#committed(first) };
    if (isFatal(first)) return { keep: ops, fatal: first };
    if (first.code !== 'DISK_FULL') {
      this.#failed(ops, first);
      return { keep: [] };
    }

    if (!this.#diskFull) ctx.log.error({ err: first.message }, 'spool: disk full; holding devices back until there is space');
    this.#diskFull = true;
    const settlements = ops.filter((op) => op.kind !== 'append');
    const appends = ops.filter((op) => op.kind === 'append');
    if (appends.length > 0) this.#markBlocked(true);
    let keep: WriteOp[] = ops;
    if (settlements.length > 0) {
      let second = commitWrites(ctx, settlements);
      if (second instanceof GatewayError && second.code === 'DISK_FULL' && this.#makeRoom()) second = commitWrites(ctx, settlements);
      if (!(second instanceof GatewayError)) {
        // With no append waiting, the disk is as good as writable again.
        this.#committed(second, appends.length === 0);
        keep = appends;
      } else if (isFatal(second)) {
        return { keep: ops, fatal: second };
      } else if (second.code !== 'DISK_FULL') {
        this.#failed(settlements, second);
        keep = appends;
      }
    }
    // Nothing is lost: what did not commit waits, in its order.
    return { keep, retryMs: ctx.options.diskFullRetryMs ?? 1000 };
  }

  /** On a full disk: gives the reserve back and checkpoints, so that small transactions fit again. */
  #makeRoom(): boolean {
    if (!this.#reserve.release()) return false;
    this.#ctx.log.warn('spool: disk full: gave back the disk reserve so that accepted readings can be removed');
    try {
      this.#ctx.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // The settlements are tried anyway; the reserve alone may be room enough.
    }
    return true;
  }

  /**
   * After a commit: memory follows the disk, settlements resolve, appends once durable. Returns
   * the appends that did not fit the quota.
   */
  #committed(outcome: Outcome, appendsTried = true): WriteOp[] {
    const ctx = this.#ctx;
    ctx.counters.commits += 1;
    if (this.#diskFull && appendsTried) {
      ctx.log.info('spool: disk space is back; writing again');
      this.#diskFull = false;
    }
    ctx.targets.applyDeltas(outcome.deltas);
    ctx.counters.dropped.evicted += outcome.evicted;
    ctx.counters.deadLettered += outcome.deadLettered;
    ctx.counters.deadLetterCount += outcome.deadLettered;
    if (outcome.evicted > 0) ctx.log.warn({ evicted: outcome.evicted }, 'spool full: dropped the oldest readings (spool.policy: drop-oldest)');
    const available = new Set<string>();
    const appends: AppendOp[] = [];
    let bytes = 0;
    for (const op of outcome.committed) {
      if (op.kind === 'append') {
        appends.push(op);
        bytes += op.bytes;
        continue;
      }
      for (const seq of op.seqs) {
        const requeue = outcome.requeue.has(seq);
        const flight = ctx.inFlight.commitSettle(seq, requeue);
        if (requeue && flight !== undefined) available.add(ctx.targets.byId(flight.target)!.address);
      }
      op.resolve();
    }
    if (appendsTried) this.#markBlocked(outcome.waiting.some((op) => op.kind === 'append'));
    for (const address of available) ctx.emit(address);
    if (appends.length > 0) this.#whenDurable(appends, outcome);
    // Last: a checkpoint that fails for good stops the spool, and nothing of this round may be
    // acknowledged after that (#whenDurable looks at ctx.failure).
    this.#checkpoints.committed(bytes);
    return outcome.waiting;
  }

  /** Appends resolve (and devices get their acknowledgement) only once the commit is on disk. */
  #whenDurable(appends: AppendOp[], outcome: Outcome): void {
    const ctx = this.#ctx;
    const now = ctx.clock.now();
    for (const target of outcome.appended) target.usedAt = now;
    // Every row committed so far: the sync asked for next covers them all.
    const upto = ctx.sql.maxSeq();
    this.#durability.durable().then(() => {
      // The storage failed meanwhile (an I/O error in a later commit): nothing more is acknowledged.
      if (ctx.failure !== undefined) throw ctx.failure;
      // Leasable from now on: sent before, a power cut could take the row back while the device,
      // not yet acknowledged, sends the reading again under a new id, and the broker would get both.
      ctx.durableSeq = Math.max(ctx.durableSeq, upto);
      for (const op of appends) op.resolve();
      for (const target of outcome.appended) ctx.emit(target.address);
    }).catch((err: unknown) => {
      const error = err instanceof GatewayError ? err : translateSqliteError(err, 'syncing the journal');
      ctx.fail(error);
      // Their rows are committed but not known to be on disk: not acknowledged, and not reported
      // as "not stored" either (a device would send them again under new ids).
      for (const op of appends) op.reject(error);
    });
  }

  /** A commit failed for a reason that may pass: appends fail (retryable), settled readings return to the queue. */
  #failed(ops: WriteOp[], error: GatewayError): void {
    const ctx = this.#ctx;
    ctx.log.error({ err: error.message, code: error.code }, 'spool: commit failed; appends refused, settled readings back in the queue');
    const available = new Set<string>();
    for (const op of ops) {
      if (op.kind !== 'append') {
        for (const seq of op.seqs) {
          const flight = ctx.inFlight.abortSettle(seq);
          if (flight !== undefined) available.add(ctx.targets.byId(flight.target)!.address);
        }
      }
      op.reject(error);
    }
    for (const address of available) ctx.emit(address);
  }

  #markBlocked(blocked: boolean): void {
    const { log, options, clock } = this.#ctx;
    if (blocked && this.#blockedSince === undefined) {
      this.#blockedSince = clock.now();
      if (!this.#diskFull) log.warn({ maxBytes: options.maxBytes, maxReadings: options.maxReadings }, 'spool full: holding devices back (spool.policy: block)');
    } else if (!blocked && this.#blockedSince !== undefined) {
      log.info({ blockedMs: clock.now() - this.#blockedSince }, 'spool has room again');
      this.#blockedSince = undefined;
    }
  }
}
