/**
 * The write queue and the group commit. Appends and settlements (ack, modify, reject) are queued
 * and committed together, one transaction per flush, at the end of the event-loop turn or at most
 * `groupCommitMs` after the first of them. A caller's promise resolves only after the transaction
 * that holds its change committed; an append's only once that commit is also durable.
 *
 * When a commit fails:
 * - a full disk: appends wait (devices are held back: the `block` rule), and the settlements are
 *   committed on their own, so that what the broker accepted leaves the spool and makes room. If
 *   even that fails, the disk reserve is given back and the WAL checkpointed, and they are tried
 *   once more; if they still cannot commit they wait too, and leasing stops once MAX_SETTLING of
 *   them wait (context.ts), so nothing grows without bound;
 * - the storage failed (an I/O error, a corrupt file): the spool stops (ctx.fail);
 * - anything else (the file busy beyond busy_timeout): the appends fail with a retryable error and
 *   the settled readings go back to the queue, to be sent again.
 */
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError } from '../../core/errors.js';
import type { DeadLetterReason } from '../interface.js';
import type { SpoolContext } from './context.js';
import { insertDeadLetter } from './dead-letters.js';
import type { WalDurability } from './durability.js';
import { isFatal, translateSqliteError } from './errors.js';
import { PRIORITIES } from './in-flight.js';
import { readReading } from './leasing.js';
import type { DiskReserve } from './reserve.js';
import { addDelta, type Deltas, type Target } from './targets.js';

type Settle = { resolve: () => void; reject: (err: GatewayError) => void };
export type AppendOp = Settle & { kind: 'append'; readings: readonly RoutedReading[]; bytes: number };
type AckOp = Settle & { kind: 'ack'; seqs: number[] };
type SettleOp = AckOp | (Settle & { kind: 'modify'; seqs: number[] }) | (Settle & { kind: 'reject'; seqs: number[]; reason: DeadLetterReason });
type WriteOp = AppendOp | SettleOp;

/** Runs of consecutive acked seqs at least this long are deleted as a range. */
const MIN_RANGE = 8;

/** What one transaction did, applied to memory only after it committed. */
interface Outcome {
  committed: WriteOp[];
  waiting: WriteOp[];
  deltas: Deltas;
  /** Settled seqs that go back to the queue (modify below the attempt cap). */
  requeue: Set<number>;
  /** Targets that got readings. */
  appended: Set<Target>;
  evicted: number;
  deadLettered: number;
}

export class WriteQueue {
  readonly #ctx: SpoolContext;
  readonly #durability: WalDurability;
  readonly #reserve: DiskReserve;
  #queue: WriteOp[] = [];
  /** The ack op still waiting in the queue, which later acks join. */
  #pendingAck: { op: AckOp; done: Promise<void> } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #blockedSince: number | undefined;
  #diskFull = false;

  constructor(ctx: SpoolContext, durability: WalDurability, reserve: DiskReserve) {
    this.#ctx = ctx;
    this.#durability = durability;
    this.#reserve = reserve;
  }

  get blocked(): boolean {
    return this.#blockedSince !== undefined;
  }

  get diskFull(): boolean {
    return this.#diskFull;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  append(readings: readonly RoutedReading[], bytes: number, signal?: AbortSignal): Promise<void> {
    return this.#enqueue((settle) => {
      if (signal === undefined) return { kind: 'append', readings, bytes, ...settle };
      const onAbort = (): void => {
        const i = this.#queue.indexOf(op);
        if (i < 0) return;
        this.#queue.splice(i, 1);
        op.reject(new GatewayError('SPOOL_FULL', 'spool: append abandoned before it was committed (nothing stored)', { retryable: true }));
      };
      // The listener goes when the append settles: a signal shared by many appends must not collect them.
      const op: AppendOp = {
        kind: 'append', readings, bytes,
        resolve: () => { signal.removeEventListener('abort', onAbort); settle.resolve(); },
        reject: (err) => { signal.removeEventListener('abort', onAbort); settle.reject(err); },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      return op;
    });
  }

  /** Acks come one delivery at a time; those before the next commit share one op (and promise). */
  ack(seqs: number[]): Promise<void> {
    const pending = this.#pendingAck;
    if (pending !== undefined) {
      for (const seq of seqs) pending.op.seqs.push(seq);
      return pending.done;
    }
    let op!: AckOp;
    const done = this.#enqueue((settle) => {
      op = { kind: 'ack', seqs, ...settle };
      return op;
    });
    this.#pendingAck = { op, done };
    return done;
  }

  modify(seqs: number[]): Promise<void> {
    return this.#enqueue((settle) => ({ kind: 'modify', seqs, ...settle }));
  }

  reject(seqs: number[], reason: DeadLetterReason): Promise<void> {
    return this.#enqueue((settle) => ({ kind: 'reject', seqs, reason, ...settle }));
  }

  /** Room may have come from elsewhere (expiry, a purge by `uplink dlq`): let waiting writes try. */
  retry(): void {
    if (this.#queue.length > 0) this.#schedule(0);
  }

  /**
   * Commits what can be committed now; everything still waiting fails as retryable, or with the
   * storage failure if that commit (or an earlier one) failed so.
   */
  stop(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    if (this.#ctx.failure === undefined) this.#flush();
    this.#failAll(this.#ctx.failure ?? new GatewayError('SPOOL_FULL', 'spool stopped before there was room', { retryable: true }));
  }

  /** The storage failed: nothing waiting will be committed. */
  failAll(error: GatewayError): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#failAll(error);
  }

  #failAll(error: GatewayError): void {
    const ops = this.#queue;
    this.#queue = [];
    this.#pendingAck = undefined;
    for (const op of ops) {
      if (op.kind !== 'append') for (const seq of op.seqs) this.#ctx.inFlight.abortSettle(seq);
      op.reject(error);
    }
  }

  #enqueue(make: (settle: Settle) => WriteOp): Promise<void> {
    const failure = this.#ctx.failure;
    if (failure !== undefined) return Promise.reject(failure);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push(make({ resolve, reject }));
      this.#schedule(this.#ctx.options.groupCommitMs);
    });
  }

  /**
   * Commits at the end of this turn of the event loop (delay 0), so a lone reading waits for
   * nothing while everything that arrived in the same turn shares the commit; or after `delayMs`.
   */
  #schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#immediate !== undefined) return;
    const run = (): void => {
      this.#timer = undefined;
      this.#immediate = undefined;
      this.#flush();
    };
    if (delayMs <= 0) this.#immediate = setImmediate(run);
    else this.#timer = setTimeout(run, delayMs);
  }

  #flush(): void {
    const ctx = this.#ctx;
    if (ctx.failure !== undefined || this.#queue.length === 0) return;
    const ops = this.#queue;
    this.#queue = [];
    this.#pendingAck = undefined;
    try {
      ctx.steps.check(ctx.sql);
    } catch {
      // Recorded on a later commit (clock-steps.ts keeps the old frame meanwhile).
    }
    const first = this.#commit(ops);
    if (!(first instanceof GatewayError)) return this.#committed(first);
    if (isFatal(first)) return this.#fatal(ops, first);
    if (first.code !== 'DISK_FULL') return this.#failed(ops, first);

    if (!this.#diskFull) ctx.log.error({ err: first.message }, 'spool: disk full; holding devices back until there is space');
    this.#diskFull = true;
    const settlements = ops.filter((op) => op.kind !== 'append');
    const appends = ops.filter((op) => op.kind === 'append');
    if (appends.length > 0) this.#markBlocked(true);
    let keep: WriteOp[] = ops;
    if (settlements.length > 0) {
      let second = this.#commit(settlements);
      if (second instanceof GatewayError && second.code === 'DISK_FULL' && this.#makeRoom()) second = this.#commit(settlements);
      if (!(second instanceof GatewayError)) {
        // With no append waiting, the disk is as good as writable again.
        this.#committed(second, appends.length === 0);
        keep = appends;
      } else if (isFatal(second)) {
        return this.#fatal(ops, second);
      } else if (second.code !== 'DISK_FULL') {
        this.#failed(settlements, second);
        keep = appends;
      }
    }
    // Nothing is lost: what did not commit waits, in its order, before anything queued since.
    this.#queue = [...keep, ...this.#queue];
    this.#schedule(ctx.options.diskFullRetryMs ?? 1000);
  }

  /** The storage failed during a flush: its writes go back to the queue, for ctx.fail to refuse. */
  #fatal(ops: WriteOp[], error: GatewayError): void {
    this.#queue = [...ops, ...this.#queue];
    this.#ctx.fail(error);
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

  /** One transaction for `ops`: what it did, or the error (already translated) it failed with. */
  #commit(ops: WriteOp[]): Outcome | GatewayError {
    const ctx = this.#ctx;
    const created: Target[] = [];
    const outcome: Outcome = { committed: [], waiting: [], deltas: new Map(), requeue: new Set(), appended: new Set(), evicted: 0, deadLettered: 0 };
    try {
      ctx.db.transaction(() => {
        ctx.options.faults?.inTransaction?.();
        this.#admit(ops, outcome);
        for (const op of outcome.committed) this.#apply(op, outcome, created);
        ctx.targets.writeDeltas(ctx.sql, outcome.deltas);
      })();
      return outcome;
    } catch (err) {
      for (const target of created) ctx.targets.forget(target);
      return translateSqliteError(err, 'committing', ctx.options.dataDir);
    }
  }

  /** After a commit: memory follows the disk, settlements resolve, appends once durable. */
  #committed(outcome: Outcome, appendsTried = true): void {
    const ctx = this.#ctx;
    ctx.counters.commits += 1;
    if (this.#diskFull && appendsTried) {
      ctx.log.info('spool: disk space is back; writing again');
      this.#diskFull = false;
    }
    this.#queue = [...outcome.waiting, ...this.#queue];
    ctx.targets.applyDeltas(outcome.deltas);
    ctx.counters.dropped.evicted += outcome.evicted;
    ctx.counters.deadLettered += outcome.deadLettered;
    ctx.counters.deadLetterCount += outcome.deadLettered;
    if (outcome.evicted > 0) ctx.log.warn({ evicted: outcome.evicted }, 'spool full: dropped the oldest readings (spool.policy: drop-oldest)');
    const available = new Set<string>();
    const appends: AppendOp[] = [];
    for (const op of outcome.committed) {
      if (op.kind === 'append') {
        appends.push(op);
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
    if (appends.length === 0) return;
    const now = ctx.clock.now();
    for (const target of outcome.appended) target.usedAt = now;
    // Appends resolve (and devices get their acknowledgement) only once the commit is on disk.
    this.#durability.durable().then(() => {
      // The storage failed meanwhile (an I/O error in a later commit): nothing more is acknowledged.
      if (ctx.failure !== undefined) throw ctx.failure;
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

  /**
   * Which queued writes fit now. Settlements always do (they free room); appends are admitted in
   * order while they fit the quota, after evicting the oldest readings under `drop-oldest`.
   */
  #admit(ops: WriteOp[], outcome: Outcome): void {
    const { options, inFlight } = this.#ctx;
    let { depth, bytes } = this.#ctx.targets.totals();
    for (const op of ops) {
      if (op.kind !== 'ack' && op.kind !== 'reject') continue;
      for (const seq of op.seqs) {
        depth -= 1;
        bytes -= inFlight.get(seq)?.bytes ?? 0;
      }
    }
    let blocked = false;
    for (const op of ops) {
      if (op.kind !== 'append') {
        outcome.committed.push(op);
        continue;
      }
      if (blocked) {
        outcome.waiting.push(op);
        continue;
      }
      let overCount = depth + op.readings.length - options.maxReadings;
      let overBytes = bytes + op.bytes - options.maxBytes;
      if ((overCount > 0 || overBytes > 0) && options.policy === 'drop-oldest') {
        const freed = this.#evict(overCount, overBytes, outcome);
        depth -= freed.count;
        bytes -= freed.bytes;
        overCount -= freed.count;
        overBytes -= freed.bytes;
      }
      if (overCount > 0 || overBytes > 0) {
        // Appends keep their order: once one waits, every later one waits behind it.
        blocked = true;
        outcome.waiting.push(op);
        continue;
      }
      depth += op.readings.length;
      bytes += op.bytes;
      outcome.committed.push(op);
    }
  }

  /** Deletes the oldest readings of the lowest priority that are not in flight. */
  #evict(count: number, bytes: number, outcome: Outcome): { count: number; bytes: number } {
    const { sql, inFlight } = this.#ctx;
    const freed = { count: 0, bytes: 0 };
    const enough = (): boolean => freed.count >= count && freed.bytes >= bytes;
    const select = sql.get('evictable');
    const remove = sql.get('remove');
    for (let priority = 0; priority < PRIORITIES && !enough(); priority++) {
      let after = 0;
      for (;;) {
        const rows = select.all(priority, after) as Array<{ seq: number; target: number; size: number }>;
        if (rows.length === 0) break;
        for (const row of rows) {
          after = row.seq;
          if (enough()) break;
          if (inFlight.busy(row.seq)) continue;
          remove.run(row.seq);
          addDelta(outcome.deltas, row.target, -1, -row.size);
          freed.count += 1;
          freed.bytes += row.size;
        }
        if (enough()) break;
      }
    }
    outcome.evicted += freed.count;
    return freed;
  }

  #apply(op: WriteOp, outcome: Outcome, created: Target[]): void {
    const { sql, targets, steps, options } = this.#ctx;
    switch (op.kind) {
      case 'append': {
        // Stamps are step-free (core/clock.ts); stored in wall time as last recorded, in whole ms
        // (rounded here, once: what is leased is what was stored).
        const offset = steps.offset;
        const now = this.#ctx.clock.now();
        const values: unknown[] = [];
        for (const r of op.readings) {
          const target = targets.ensure(sql, r.address, now, created);
          values.push(r.id, target.id, r.priority, r.topic, r.payload, Math.round(r.receivedAt + offset),
            r.expiresAt === undefined ? null : Math.round(r.expiresAt + offset));
          addDelta(outcome.deltas, target.id, 1, r.payload.length);
          outcome.appended.add(target);
        }
        sql.insert(values);
        return;
      }
      case 'ack': {
        // A drain acks runs of consecutive seqs: each run is one range DELETE (cheaper per row than
        // by key); the odd ones out go in one statement as a JSON array. RETURNING says which rows went.
        const range = sql.get('removeRange').pluck();
        const single: number[] = [];
        const deleted: number[] = [];
        const seqs = op.seqs.sort((a, b) => a - b);
        for (let i = 0; i < seqs.length;) {
          let j = i + 1;
          while (j < seqs.length && seqs[j] === seqs[j - 1]! + 1) j++;
          if (j - i >= MIN_RANGE) for (const seq of range.all(seqs[i], seqs[j - 1]) as number[]) deleted.push(seq);
          else for (let k = i; k < j; k++) single.push(seqs[k]!);
          i = j;
        }
        if (single.length > 0) for (const seq of sql.get('removeListed').pluck().all(JSON.stringify(single)) as number[]) deleted.push(seq);
        for (const seq of deleted) this.#removed(seq, outcome);
        return;
      }
      case 'modify': {
        const bump = sql.get('bumpAttempts').pluck();
        for (const seq of op.seqs) {
          const attempts = bump.get(seq) as number | undefined;
          if (attempts === undefined) continue;
          if (attempts < options.maxAttempts) {
            outcome.requeue.add(seq);
            continue;
          }
          this.#deadLetter(seq, { condition: 'uplink:max-attempts', description: `returned as modified ${attempts} times (spool.maxAttempts)` }, outcome);
        }
        return;
      }
      case 'reject':
        for (const seq of op.seqs) this.#deadLetter(seq, op.reason, outcome);
        return;
    }
  }

  #deadLetter(seq: number, reason: DeadLetterReason, outcome: Outcome): void {
    const reading = readReading(this.#ctx, seq);
    if (reading === undefined) return;
    insertDeadLetter(this.#ctx.db, reading, reason, this.#ctx.steps.wallNow());
    outcome.deadLettered += 1;
    if (this.#ctx.sql.get('remove').run(seq).changes === 1) this.#removed(seq, outcome);
  }

  /** A settled reading left the queue: its target's totals follow. */
  #removed(seq: number, outcome: Outcome): void {
    const flight = this.#ctx.inFlight.get(seq);
    if (flight !== undefined) addDelta(outcome.deltas, flight.target, -1, -flight.bytes);
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
