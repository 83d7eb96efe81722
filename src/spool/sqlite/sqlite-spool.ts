/**
 * The spool on SQLite (better-sqlite3). See database.ts for the on-disk format and interface.ts
 * for the contract.
 *
 * Invariants
 * - A reading is deleted only by `ack`, by dead-lettering (reject, attempt cap, expiry with
 *   `expired: dead-letter`), or by the policy (`drop-oldest`, expiry with `expired: drop`), and
 *   each deletion is counted.
 * - Writes (appends, acks, modify, reject) are queued and committed together, one transaction per
 *   flush, at most `groupCommitMs` after the first of them: this is the group commit. A caller's
 *   promise resolves only after the transaction that holds its change has committed.
 * - `targets.depth/bytes` change in the same transaction as the rows they count.
 * - The commits run on the main thread: bench/spool.ts measures what a commit costs the event
 *   loop (see the README for the figures and why no worker thread is used).
 */
import { GatewayError } from '../../core/errors.js';
import type { RoutedReading } from '../../core/envelope.js';
import type { Logger } from '../../core/logger.js';
import type {
  DeadLetterReason, DeadLetterStore, DropReason, Spool, SpooledReading, SpoolStats,
} from '../interface.js';
import { closeSync, fdatasync, openSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { openSpoolDatabase, spoolFile, type Db } from './database.js';
import { insertDeadLetter, SqliteDeadLetterStore } from './dead-letters.js';
import { translateSqliteError } from './errors.js';
import { LeaseState, PRIORITIES } from './lease-state.js';
import { lockSpoolDir, type OwnerLock } from './owner-lock.js';

export interface SqliteSpoolOptions {
  dataDir: string;
  durability: 'full' | 'normal';
  groupCommitMs: number;
  maxBytes: number;
  maxReadings: number;
  policy: 'block' | 'drop-oldest';
  expired: 'drop' | 'dead-letter';
  maxAttempts: number;
  onCorrupt: 'fail' | 'fresh';
  log: Logger;
  /** How often to look for expired readings, other processes' changes and free pages. */
  maintenanceMs?: number;
  /** How long to wait before retrying a commit that failed on a full disk. */
  diskFullRetryMs?: number;
  now?: () => number;
}

interface Target {
  id: number;
  address: string;
  depth: number;
  bytes: number;
  lease: LeaseState;
}

interface Row {
  seq: number; id: string; priority: number; topic: string; payload: Buffer;
  received_at: number; expires_at: number | null; attempts: number;
}

type Settle = { resolve: () => void; reject: (err: GatewayError) => void };
type AppendOp = Settle & { kind: 'append'; readings: readonly RoutedReading[]; bytes: number; signal?: AbortSignal };
type AckOp = Settle & { kind: 'ack'; seqs: number[] };
type WriteOp =
  | AppendOp
  | AckOp
  | (Settle & { kind: 'modify'; seqs: number[] })
  | (Settle & { kind: 'reject'; seqs: number[]; reason: DeadLetterReason });

/** What one transaction changed, applied to the in-memory totals only after it commits. */
type Deltas = Map<number, { depth: number; bytes: number }>;

interface Flight { target: Target; priority: number; bytes: number }

export class SqliteSpool implements Spool {
  readonly #options: SqliteSpoolOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  #db: Db | undefined;
  /** Prepared statements by SQL text: preparing once matters on the append path. */
  readonly #statements = new Map<string, Database.Statement>();
  #deadLetters: SqliteDeadLetterStore | undefined;
  readonly #targets = new Map<number, Target>();
  readonly #byAddress = new Map<string, Target>();
  /** Every seq in flight, across targets. */
  readonly #flight = new Map<number, Flight>();
  /** Seqs whose ack/modify/reject waits for its commit: never leased again, even after releaseAll. */
  readonly #settling = new Map<number, Flight>();
  #queue: WriteOp[] = [];
  /** The ack op still waiting in the queue, which later acks join. */
  #pendingAck: { op: AckOp; done: Promise<void> } | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #flushImmediate: NodeJS.Immediate | undefined;
  #maintenanceTimer: NodeJS.Timeout | undefined;
  #dataVersion = 0;
  #blockedSince: number | undefined;
  #diskFull = false;
  #commits = 0;
  #deadLettered = 0;
  #deadLetterCount = 0;
  #walFd: number | undefined;
  #lock: OwnerLock | undefined;
  /** fsyncs in flight: the file is not closed under them. */
  readonly #syncing = new Set<Promise<void>>();
  readonly #dropped: Record<DropReason, number> = { expired: 0, evicted: 0 };
  readonly #listeners = new Set<(address: string) => void>();

  constructor(options: SqliteSpoolOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
  }

  get deadLetters(): DeadLetterStore {
    if (this.#deadLetters === undefined) throw new GatewayError('INTERNAL', 'spool not started');
    return this.#deadLetters;
  }

  async start(): Promise<void> {
    this.#lock = lockSpoolDir(this.#options.dataDir);
    let db: Db;
    try {
      db = openSpoolDatabase({ ...this.#options, log: this.#log });
    } catch (err) {
      this.#lock.release();
      this.#lock = undefined;
      throw err;
    }
    // See #durable: the fsync of each append's commit is ours, off the event loop.
    if (this.#options.durability === 'full') db.pragma('synchronous = NORMAL');
    this.#db = db;
    this.#deadLetters = new SqliteDeadLetterStore(db);
    this.#loadTargets();
    this.#deadLetterCount = this.#deadLetters.count();
    this.#dataVersion = db.pragma('data_version', { simple: true }) as number;
    this.#maintenanceTimer = setInterval(() => this.#maintain(), this.#options.maintenanceMs ?? 1000);
    const stats = this.stats();
    this.#log.info({ depth: stats.depth, bytes: stats.bytes, deadLetters: stats.deadLetters, addresses: Object.keys(stats.byAddress).length },
      'spool opened');
  }

  async stop(): Promise<void> {
    clearInterval(this.#maintenanceTimer);
    clearTimeout(this.#flushTimer);
    clearImmediate(this.#flushImmediate);
    this.#flushTimer = undefined;
    this.#flushImmediate = undefined;
    if (this.#db === undefined) return;
    // Commit what can be committed; appends still blocked fail as retryable so nobody waits forever.
    this.#flush();
    for (const op of this.#queue) op.reject(new GatewayError('SPOOL_FULL', 'spool stopped before there was room', { retryable: true }));
    this.#queue = [];
    // Appends still waiting for their fsync get it (and resolve) before the file closes.
    await Promise.allSettled([...this.#syncing]);
    this.#db.close();
    this.#db = undefined;
    this.#statements.clear();
    if (this.#walFd !== undefined) closeSync(this.#walFd);
    this.#walFd = undefined;
    this.#lock?.release();
    this.#lock = undefined;
  }

  append(readings: readonly RoutedReading[], options: { signal?: AbortSignal } = {}): Promise<void> {
    if (readings.length === 0) return Promise.resolve();
    const bytes = readings.reduce((sum, r) => sum + r.payload.length, 0);
    if (bytes > this.#options.maxBytes || readings.length > this.#options.maxReadings) {
      return Promise.reject(new GatewayError('PAYLOAD_TOO_LARGE',
        `spool: ${readings.length} readings of ${bytes} bytes can never fit (spool.maxBytes ${this.#options.maxBytes})`));
    }
    for (const r of readings) {
      if (!Number.isInteger(r.priority) || r.priority < 0 || r.priority >= PRIORITIES) {
        return Promise.reject(new GatewayError('BAD_INPUT', `spool: priority ${r.priority} is not 0-9`));
      }
    }
    return this.#enqueue((settle) => {
      const signal = options.signal;
      if (signal === undefined) return { kind: 'append', readings, bytes, ...settle };
      const onAbort = (): void => {
        const i = this.#queue.indexOf(op);
        if (i >= 0) {
          this.#queue.splice(i, 1);
          op.reject(new GatewayError('SPOOL_FULL', 'spool: append abandoned before it was committed (nothing stored)', { retryable: true }));
        }
      };
      // The listener goes when the append settles: a signal shared by many appends must not collect them.
      const op: AppendOp = {
        kind: 'append', readings, bytes, signal,
        resolve: () => { signal.removeEventListener('abort', onAbort); settle.resolve(); },
        reject: (err) => { signal.removeEventListener('abort', onAbort); settle.reject(err); },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      return op;
    });
  }

  async lease(address: string, max: number): Promise<SpooledReading[]> {
    const target = this.#byAddress.get(address);
    const db = this.#db;
    if (target === undefined || db === undefined || max <= 0) return [];
    try {
      return this.#leaseFrom(db, target, max);
    } catch (err) {
      throw translateSqliteError(err, `leasing from ${address}`);
    }
  }

  ack(seqs: readonly number[]): Promise<void> {
    const owned = this.#takeFromFlight(seqs);
    if (owned.length === 0) return Promise.resolve();
    // Acks come one delivery at a time; those before the next commit share one op (and promise).
    const pending = this.#pendingAck;
    if (pending !== undefined) {
      for (const seq of owned) pending.op.seqs.push(seq);
      return pending.done;
    }
    let op!: AckOp;
    const done = this.#enqueue((settle) => {
      op = { kind: 'ack', seqs: owned, ...settle };
      return op;
    });
    this.#pendingAck = { op, done };
    return done;
  }

  async release(seqs: readonly number[]): Promise<void> {
    const touched = new Set<Target>();
    for (const seq of seqs) {
      const flight = this.#flight.get(seq);
      if (flight === undefined) continue;
      this.#flight.delete(seq);
      flight.target.lease.release(seq);
      touched.add(flight.target);
    }
    for (const target of touched) this.#emit(target.address);
  }

  modify(seqs: readonly number[]): Promise<void> {
    const owned = this.#takeFromFlight(seqs);
    if (owned.length === 0) return Promise.resolve();
    return this.#enqueue((settle) => ({ kind: 'modify', seqs: owned, ...settle }));
  }

  reject(seqs: readonly number[], reason: DeadLetterReason): Promise<void> {
    const owned = this.#takeFromFlight(seqs);
    if (owned.length === 0) return Promise.resolve();
    return this.#enqueue((settle) => ({ kind: 'reject', seqs: owned, reason, ...settle }));
  }

  releaseAll(address?: string): void {
    for (const target of this.#targets.values()) {
      if (address !== undefined && target.address !== address) continue;
      for (const seq of target.lease.inFlight.keys()) this.#flight.delete(seq);
      target.lease.reset();
      if (target.depth > 0) this.#emit(target.address);
    }
  }

  addresses(): string[] {
    return [...this.#targets.values()].filter((t) => t.depth - t.lease.inFlight.size > 0).map((t) => t.address);
  }

  stats(): SpoolStats {
    let depth = 0;
    let bytes = 0;
    const byAddress: Record<string, number> = {};
    for (const t of this.#targets.values()) {
      depth += t.depth;
      bytes += t.bytes;
      if (t.depth > 0) byAddress[t.address] = t.depth;
    }
    let oldestAgeMs = 0;
    if (depth > 0 && this.#db !== undefined) {
      const oldest = this.#sql(this.#db, 'SELECT received_at FROM readings ORDER BY seq LIMIT 1').pluck().get() as number | undefined;
      if (oldest !== undefined) oldestAgeMs = Math.max(0, this.#now() - oldest);
    }
    return {
      depth, bytes, oldestAgeMs, inFlight: this.#flight.size, deadLettered: this.#deadLettered,
      deadLetters: this.#deadLetterCount,
      dropped: { ...this.#dropped }, byAddress, blocked: this.#blockedSince !== undefined,
      diskFull: this.#diskFull, commits: this.#commits,
    };
  }

  onAvailable(listener: (address: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- the write queue -------------------------------------------------------------------

  #enqueue(make: (settle: Settle) => WriteOp): Promise<void> {
    if (this.#db === undefined) return Promise.reject(new GatewayError('INTERNAL', 'spool not started'));
    return new Promise<void>((resolve, reject) => {
      this.#queue.push(make({ resolve, reject }));
      this.#scheduleFlush(this.#options.groupCommitMs);
    });
  }

  /**
   * Commits at the end of this turn of the event loop (delay 0), so a lone reading waits for
   * nothing while everything that arrived in the same turn shares the commit; or after `delayMs`.
   */
  #scheduleFlush(delayMs: number): void {
    if (this.#flushTimer !== undefined || this.#flushImmediate !== undefined) return;
    const run = (): void => {
      this.#flushTimer = undefined;
      this.#flushImmediate = undefined;
      this.#flush();
    };
    if (delayMs <= 0) this.#flushImmediate = setImmediate(run);
    else this.#flushTimer = setTimeout(run, delayMs);
  }

  /** Commits every queued write that can be committed now, in one transaction. */
  #flush(): void {
    const db = this.#db;
    if (db === undefined || this.#queue.length === 0) return;
    const ops = this.#queue;
    this.#pendingAck = undefined;
    const deltas: Deltas = new Map();
    const appended = new Set<Target>();
    let committed: WriteOp[] = [];
    let waiting: WriteOp[] = [];
    const tally = { evicted: 0, deadLettered: 0 };
    const newTargets: Target[] = [];
    const requeue: number[] = [];
    try {
      db.transaction(() => {
        const plan = this.#admit(db, ops, deltas, tally);
        committed = plan.admitted;
        waiting = plan.waiting;
        for (const op of committed) this.#apply(db, op, deltas, appended, newTargets, requeue, tally);
        this.#writeDeltas(db, deltas);
      })();
    } catch (err) {
      for (const target of newTargets) this.#forgetTarget(target);
      const error = translateSqliteError(err, 'committing');
      if (error.code === 'DISK_FULL') {
        // Block, do not fail: keep everything queued and try again; the file stays consistent.
        if (!this.#diskFull) this.#log.error({ err: error.message }, 'spool: disk full; holding devices back until there is space');
        this.#diskFull = true;
        this.#markBlocked(true);
        this.#scheduleFlush(this.#options.diskFullRetryMs ?? 1000);
        return;
      }
      this.#queue = [];
      for (const op of ops) op.reject(error);
      if (error.code === 'SPOOL_CORRUPT') this.#log.fatal({ err: error.message }, 'spool database is corrupt');
      return;
    }
    this.#commits += 1;
    if (this.#diskFull) this.#log.info('spool: disk space is back; writing again');
    this.#diskFull = false;
    this.#queue = waiting;
    this.#applyDeltas(deltas);
    this.#dropped.evicted += tally.evicted;
    this.#countDeadLetters(tally.deadLettered);
    if (tally.evicted > 0) this.#log.warn({ evicted: tally.evicted }, 'spool full: dropped the oldest readings (spool.policy: drop-oldest)');
    for (const seq of requeue) {
      // A modified reading goes back to its place, once its attempt count is on disk.
      const flight = this.#settling.get(seq);
      if (flight === undefined) continue;
      flight.target.lease.requeue(seq, flight.priority);
      appended.add(flight.target);
    }
    for (const op of committed) {
      if (op.kind === 'append') continue;
      for (const seq of op.seqs) this.#settling.delete(seq);
      op.resolve();
    }
    this.#markBlocked(waiting.some((op) => op.kind === 'append'));
    const appends = committed.filter((op) => op.kind === 'append');
    if (appends.length === 0) {
      for (const target of appended) this.#emit(target.address);
      return;
    }
    // Appends resolve (and devices get their acknowledgement) only once the commit is on disk.
    this.#durable().then(() => {
      for (const op of appends) op.resolve();
      for (const target of appended) this.#emit(target.address);
    }, (err: unknown) => {
      const error = translateSqliteError(err, 'syncing the journal');
      this.#log.error({ err: error.message }, 'spool: fsync failed; the devices will send again');
      for (const op of appends) op.reject(error);
    });
  }

  /**
   * Makes everything committed so far durable. With `durability: full`, SQLite commits without
   * its own fsync (synchronous=NORMAL) and the WAL is fsynced here, on libuv's thread pool, so the
   * event loop keeps serving devices during the fsync and the next group commit forms meanwhile.
   * An fsync covers every commit written before it. Settlements need no fsync: losing one to a
   * power cut only sends a reading again, with the same message_id. fdatasync, as SQLite itself
   * uses on Linux: it flushes the data and the file size but not the timestamps, so an overwrite
   * of the reused WAL costs no journal commit of the inode (about half the time on ext4 here).
   */
  #durable(): Promise<void> {
    if (this.#options.durability !== 'full') return Promise.resolve();
    if (this.#walFd === undefined) this.#walFd = openSync(`${spoolFile(this.#options.dataDir)}-wal`, 'r+');
    const fd = this.#walFd;
    const done = new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    this.#syncing.add(done);
    const forget = (): void => { this.#syncing.delete(done); };
    done.then(forget, forget);
    return done;
  }

  /**
   * Which queued writes fit now. Settlements always do (they free room); appends are admitted in
   * order while they fit the quota, after evicting the oldest readings under `drop-oldest`.
   */
  #admit(db: Db, ops: WriteOp[], deltas: Deltas, dropped: { evicted: number }): { admitted: WriteOp[]; waiting: WriteOp[] } {
    let depth = 0;
    let bytes = 0;
    for (const t of this.#targets.values()) {
      depth += t.depth;
      bytes += t.bytes;
    }
    for (const op of ops) {
      if (op.kind !== 'ack' && op.kind !== 'reject') continue;
      for (const seq of op.seqs) {
        depth -= 1;
        bytes -= this.#settling.get(seq)?.bytes ?? 0;
      }
    }
    const admitted: WriteOp[] = [];
    const waiting: WriteOp[] = [];
    for (const op of ops) {
      if (op.kind !== 'append') {
        admitted.push(op);
        continue;
      }
      if (waiting.some((w) => w.kind === 'append')) {
        waiting.push(op);
        continue;
      }
      let overflowCount = depth + op.readings.length - this.#options.maxReadings;
      let overflowBytes = bytes + op.bytes - this.#options.maxBytes;
      if ((overflowCount > 0 || overflowBytes > 0) && this.#options.policy === 'drop-oldest') {
        const freed = this.#evict(db, overflowCount, overflowBytes, deltas);
        dropped.evicted += freed.count;
        depth -= freed.count;
        bytes -= freed.bytes;
        overflowCount -= freed.count;
        overflowBytes -= freed.bytes;
      }
      if (overflowCount > 0 || overflowBytes > 0) {
        waiting.push(op);
        continue;
      }
      depth += op.readings.length;
      bytes += op.bytes;
      admitted.push(op);
    }
    return { admitted, waiting };
  }

  /** Deletes the oldest readings of the lowest priority that are not in flight. */
  #evict(db: Db, count: number, bytes: number, deltas: Deltas): { count: number; bytes: number } {
    const freed = { count: 0, bytes: 0 };
    const select = this.#sql(db, 'SELECT seq, target, length(payload) AS size FROM readings WHERE priority = ? AND seq > ? ORDER BY seq LIMIT 256');
    const remove = this.#sql(db, 'DELETE FROM readings WHERE seq = ?');
    for (let priority = 0; priority < PRIORITIES && (freed.count < count || freed.bytes < bytes); priority++) {
      let after = 0;
      for (;;) {
        const rows = select.all(priority, after) as Array<{ seq: number; target: number; size: number }>;
        if (rows.length === 0) break;
        for (const row of rows) {
          after = row.seq;
          if (freed.count >= count && freed.bytes >= bytes) break;
          if (this.#flight.has(row.seq) || this.#settling.has(row.seq)) continue;
          remove.run(row.seq);
          addDelta(deltas, row.target, -1, -row.size);
          freed.count += 1;
          freed.bytes += row.size;
        }
        if (freed.count >= count && freed.bytes >= bytes) break;
      }
    }
    return freed;
  }

  #apply(db: Db, op: WriteOp, deltas: Deltas, appended: Set<Target>, newTargets: Target[], requeue: number[],
    tally: { deadLettered: number }): void {
    switch (op.kind) {
      case 'append': {
        // Rows go in with multi-row INSERTs: one call into SQLite per chunk instead of per row.
        const values: unknown[] = [];
        const flushRows = (rows: number): void => {
          if (rows > 0) this.#sql(db, insertSql(rows)).run(values);
          values.length = 0;
        };
        let rows = 0;
        for (const r of op.readings) {
          const target = this.#targetFor(db, r.address, newTargets);
          values.push(r.id, target.id, r.priority, r.topic, r.payload, r.receivedAt, r.expiresAt ?? null);
          addDelta(deltas, target.id, 1, r.payload.length);
          appended.add(target);
          if (++rows === INSERT_CHUNK) {
            flushRows(rows);
            rows = 0;
          }
        }
        flushRows(rows);
        return;
      }
      case 'ack': {
        // A drain acks runs of consecutive seqs: each run is one range DELETE (cheaper per row than
        // by key); the odd ones out go in one statement as a JSON array. RETURNING says which rows went.
        const range = this.#sql(db, 'DELETE FROM readings WHERE seq BETWEEN ? AND ? RETURNING seq').pluck();
        const listed = this.#sql(db, 'DELETE FROM readings WHERE seq IN (SELECT value FROM json_each(?)) RETURNING seq').pluck();
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
        if (single.length > 0) for (const seq of listed.all(JSON.stringify(single)) as number[]) deleted.push(seq);
        for (const seq of deleted) {
          const flight = this.#settling.get(seq);
          if (flight !== undefined) addDelta(deltas, flight.target.id, -1, -flight.bytes);
        }
        return;
      }
      case 'modify': {
        const bump = this.#sql(db, 'UPDATE readings SET attempts = attempts + 1 WHERE seq = ? RETURNING attempts');
        const remove = this.#sql(db, 'DELETE FROM readings WHERE seq = ?');
        for (const seq of op.seqs) {
          const attempts = bump.pluck().get(seq) as number | undefined;
          if (attempts !== undefined && attempts >= this.#options.maxAttempts) {
            const reading = this.#readRow(db, seq);
            if (reading !== undefined) {
              insertDeadLetter(db, reading, { condition: 'uplink:max-attempts',
                description: `returned as modified ${attempts} times (spool.maxAttempts)` }, this.#now());
              tally.deadLettered += 1;
            }
            this.#deleteSettled(remove, seq, deltas);
          } else {
            requeue.push(seq);
          }
        }
        return;
      }
      case 'reject': {
        const remove = this.#sql(db, 'DELETE FROM readings WHERE seq = ?');
        for (const seq of op.seqs) {
          const reading = this.#readRow(db, seq);
          if (reading !== undefined) {
            insertDeadLetter(db, reading, op.reason, this.#now());
            tally.deadLettered += 1;
          }
          this.#deleteSettled(remove, seq, deltas);
        }
        return;
      }
    }
  }

  /** Deletes a settled reading; counts a dead letter when it goes to the store. */
  #deleteSettled(remove: { run(seq: number): { changes: number } }, seq: number, deltas: Deltas): void {
    const flight = this.#settling.get(seq);
    if (remove.run(seq).changes === 1 && flight !== undefined) addDelta(deltas, flight.target.id, -1, -flight.bytes);
  }

  /** Takes seqs out of flight for settlement; the ones not in flight are ignored (already settled). */
  #takeFromFlight(seqs: readonly number[]): number[] {
    const owned: number[] = [];
    for (const seq of seqs) {
      const flight = this.#flight.get(seq);
      if (flight === undefined) continue;
      this.#flight.delete(seq);
      flight.target.lease.settle(seq);
      this.#settling.set(seq, flight);
      owned.push(seq);
    }
    return owned;
  }

  /** After a commit: the in-memory totals follow what the transaction wrote to `targets`. */
  #applyDeltas(deltas: Deltas): void {
    for (const [id, delta] of deltas) {
      const target = this.#targets.get(id);
      if (target === undefined) continue;
      target.depth += delta.depth;
      target.bytes += delta.bytes;
    }
  }

  // ---- reading ---------------------------------------------------------------------------

  #leaseFrom(db: Db, target: Target, max: number): SpooledReading[] {
    const out: SpooledReading[] = [];
    const expired: SpooledReading[] = [];
    const now = this.#now();
    const bySeq = this.#sql(db, 'SELECT seq, id, priority, topic, payload, received_at, expires_at, attempts FROM readings WHERE seq = ?');
    // Raw rows (arrays): on the drain path a row object per reading is measurably dearer.
    const scan = this.#sql(db, 'SELECT seq, id, priority, topic, payload, received_at, expires_at, attempts FROM readings ' +
      'WHERE target = ? AND priority = ? AND seq > ? ORDER BY seq LIMIT ?').raw(true);
    const lease = target.lease;
    for (let priority = PRIORITIES - 1; priority >= 0 && out.length < max; priority--) {
      const redo = lease.redo[priority]!;
      while (redo.length > 0 && out.length < max) {
        const seq = redo.shift()!;
        const row = bySeq.get(seq) as Row | undefined;
        if (row !== undefined) this.#hand(target, toReading(target.address, row), now, out, expired);
      }
      while (out.length < max) {
        const rows = scan.all(target.id, priority, lease.cursor[priority], Math.max(16, max - out.length)) as RawRow[];
        if (rows.length === 0) break;
        for (const row of rows) {
          if (out.length >= max) break;
          const seq = row[0];
          lease.cursor[priority] = seq;
          if (this.#settling.has(seq) || this.#flight.has(seq)) continue;
          this.#hand(target, fromRaw(target.address, row), now, out, expired);
        }
      }
    }
    if (expired.length > 0) this.#expire(db, expired);
    return out;
  }

  #hand(target: Target, reading: SpooledReading, now: number, out: SpooledReading[], expired: SpooledReading[]): void {
    if (reading.expiresAt !== undefined && reading.expiresAt <= now) {
      expired.push(reading);
      return;
    }
    target.lease.take(reading.seq, reading.priority);
    this.#flight.set(reading.seq, { target, priority: reading.priority, bytes: reading.payload.length });
    out.push(reading);
  }

  /** Removes readings whose TTL passed: dropped or dead-lettered, and counted either way. */
  #expire(db: Db, readings: SpooledReading[]): void {
    const deadLetter = this.#options.expired === 'dead-letter';
    const deltas: Deltas = new Map();
    try {
      db.transaction(() => {
        const remove = this.#sql(db, 'DELETE FROM readings WHERE seq = ?');
        for (const r of readings) {
          if (remove.run(r.seq).changes !== 1) continue;
          if (deadLetter) insertDeadLetter(db, r, { condition: 'uplink:expired', description: 'the TTL passed before it was forwarded' }, this.#now());
          addDelta(deltas, this.#byAddress.get(r.address)!.id, -1, -r.payload.length);
        }
        this.#writeDeltas(db, deltas);
      })();
    } catch (err) {
      // Expired readings stay where they are and are found again on the next lease or sweep.
      this.#log.warn({ err: translateSqliteError(err, 'removing expired readings').message }, 'spool: could not remove expired readings');
      return;
    }
    this.#applyDeltas(deltas);
    if (deadLetter) this.#countDeadLetters(readings.length);
    else this.#dropped.expired += readings.length;
    this.#log.warn({ count: readings.length, action: this.#options.expired }, 'spool: readings expired before they could be forwarded');
  }

  #readRow(db: Db, seq: number): SpooledReading | undefined {
    const row = this.#sql(db, 'SELECT r.seq, r.id, r.priority, r.topic, r.payload, r.received_at, r.expires_at, r.attempts, t.address ' +
      'FROM readings r JOIN targets t ON t.id = r.target WHERE r.seq = ?').get(seq) as (Row & { address: string }) | undefined;
    return row === undefined ? undefined : toReading(row.address, row);
  }

  // ---- targets and maintenance -----------------------------------------------------------

  #loadTargets(): void {
    const rows = this.#sql(this.#db!, 'SELECT id, address, depth, bytes FROM targets').all() as Array<{ id: number; address: string; depth: number; bytes: number }>;
    for (const row of rows) {
      const existing = this.#targets.get(row.id);
      if (existing !== undefined) {
        existing.depth = row.depth;
        existing.bytes = row.bytes;
        continue;
      }
      const target: Target = { ...row, lease: new LeaseState() };
      this.#targets.set(row.id, target);
      this.#byAddress.set(row.address, target);
    }
  }

  #targetFor(db: Db, address: string, created: Target[]): Target {
    const known = this.#byAddress.get(address);
    if (known !== undefined) return known;
    const id = Number(this.#sql(db, 'INSERT INTO targets (address) VALUES (?)').run(address).lastInsertRowid);
    const target: Target = { id, address, depth: 0, bytes: 0, lease: new LeaseState() };
    this.#targets.set(id, target);
    this.#byAddress.set(address, target);
    created.push(target);
    return target;
  }

  #forgetTarget(target: Target): void {
    this.#targets.delete(target.id);
    this.#byAddress.delete(target.address);
  }

  #maintain(): void {
    const db = this.#db;
    if (db === undefined) return;
    try {
      // Another process (uplink dlq replay) committed: re-read the totals and wake the forwarder.
      const version = db.pragma('data_version', { simple: true }) as number;
      if (version !== this.#dataVersion) {
        this.#dataVersion = version;
        this.#loadTargets();
        this.#deadLetterCount = this.#deadLetters!.count();
        for (const t of this.#targets.values()) if (t.depth > t.lease.inFlight.size) this.#emit(t.address);
      }
      this.#sweepExpired(db);
      // Room may have come from elsewhere (expiry, a purge by `uplink dlq`): let waiting appends in.
      if (this.#queue.length > 0) this.#scheduleFlush(0);
      const free = db.pragma('freelist_count', { simple: true }) as number;
      // Give freed pages back bit by bit: the file shrinks without one long, write-heavy VACUUM.
      if (free > 256) {
        db.pragma('incremental_vacuum(256)');
        // The file only shrinks when the WAL is checkpointed; do it now rather than at the next burst.
        db.pragma('wal_checkpoint(PASSIVE)');
      }
    } catch (err) {
      this.#log.warn({ err: translateSqliteError(err, 'maintenance').message }, 'spool maintenance failed; will retry');
    }
  }

  #sweepExpired(db: Db): void {
    const rows = this.#sql(db, 'SELECT r.seq, r.id, r.priority, r.topic, r.payload, r.received_at, r.expires_at, r.attempts, t.address ' +
      'FROM readings r JOIN targets t ON t.id = r.target WHERE r.expires_at IS NOT NULL AND r.expires_at <= ? ORDER BY r.expires_at LIMIT 1000')
      .all(this.#now()) as Array<Row & { address: string }>;
    const expired = rows.filter((row) => !this.#flight.has(row.seq) && !this.#settling.has(row.seq))
      .map((row) => toReading(row.address, row));
    if (expired.length > 0) this.#expire(db, expired);
  }

  #countDeadLetters(count: number): void {
    this.#deadLettered += count;
    this.#deadLetterCount += count;
  }

  #markBlocked(blocked: boolean): void {
    if (blocked && this.#blockedSince === undefined) {
      this.#blockedSince = this.#now();
      if (!this.#diskFull) this.#log.warn({ maxBytes: this.#options.maxBytes, maxReadings: this.#options.maxReadings }, 'spool full: holding devices back (spool.policy: block)');
    } else if (!blocked && this.#blockedSince !== undefined) {
      this.#log.info({ blockedMs: this.#now() - this.#blockedSince }, 'spool has room again');
      this.#blockedSince = undefined;
    }
  }

  /** Writes a transaction's changes of depth and bytes to `targets`, inside that transaction. */
  #writeDeltas(db: Db, deltas: Deltas): void {
    const update = this.#sql(db, 'UPDATE targets SET depth = depth + ?, bytes = bytes + ? WHERE id = ?');
    for (const [id, delta] of deltas) update.run(delta.depth, delta.bytes, id);
  }

  #sql(db: Db, text: string): Database.Statement {
    let statement = this.#statements.get(text);
    if (statement === undefined) {
      statement = db.prepare(text);
      this.#statements.set(text, statement);
    }
    return statement;
  }

  #emit(address: string): void {
    for (const listener of this.#listeners) {
      try {
        listener(address);
      } catch (err) {
        this.#log.error({ err }, 'spool listener failed');
      }
    }
  }
}

const INSERT_CHUNK = 64;
/** Runs of consecutive acked seqs at least this long are deleted as a range. */
const MIN_RANGE = 8;
const insertSqlCache = new Map<number, string>();
/** INSERT of `rows` readings; chunks keep the statement count small and well under SQLite's parameter limit. */
function insertSql(rows: number): string {
  let sql = insertSqlCache.get(rows);
  if (sql === undefined) {
    sql = `INSERT INTO readings (id, target, priority, topic, payload, received_at, expires_at) VALUES ${
      Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, ?, ?)').join(', ')}`;
    insertSqlCache.set(rows, sql);
  }
  return sql;
}

function addDelta(deltas: Deltas, target: number, depth: number, bytes: number): void {
  const delta = deltas.get(target);
  if (delta === undefined) deltas.set(target, { depth, bytes });
  else {
    delta.depth += depth;
    delta.bytes += bytes;
  }
}

/** A row of the lease scan in raw mode, in the order of its SELECT. */
type RawRow = [seq: number, id: string, priority: number, topic: string, payload: Buffer, receivedAt: number, expiresAt: number | null, attempts: number];

function fromRaw(address: string, row: RawRow): SpooledReading {
  const reading: SpooledReading = {
    seq: row[0], id: row[1], address, priority: row[2], topic: row[3], payload: row[4], receivedAt: row[5], attempts: row[7],
  };
  if (row[6] !== null) reading.expiresAt = row[6];
  return reading;
}

function toReading(address: string, row: Row): SpooledReading {
  return {
    seq: row.seq, id: row.id, address, priority: row.priority, topic: row.topic, payload: row.payload,
    receivedAt: row.received_at, ...(row.expires_at === null ? {} : { expiresAt: row.expires_at }), attempts: row.attempts,
  };
}
