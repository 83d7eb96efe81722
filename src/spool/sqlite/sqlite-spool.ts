/**
 * The spool on SQLite (better-sqlite3): the facade over its parts. The contract is in
 * ../interface.ts, the on-disk format in database.ts.
 *
 * Invariants
 * 1. A reading is deleted only by `ack`, by dead-lettering (reject, the attempt cap, expiry with
 *    `expired: dead-letter`), or by the policy (`drop-oldest`, expiry with `expired: drop`); each
 *    deletion is counted.
 * 2. An append resolves only once its transaction committed and, with `durability: full`, the WAL
 *    was fsynced after it (durability.ts). After a failed fsync or an I/O error nothing more is
 *    acknowledged (no append, and no settlement reported done): the spool stops at once and
 *    `onFatal` is called (errors.ts says why).
 * 3. No reading is handed out twice at once, and none is stranded: whatever is not in flight (and
 *    is on disk, 7) is leasable, in order per address (priority, then arrival), whatever
 *    interleaving of leases, settlements, commits, failed commits and releaseAll came before
 *    (in-flight.ts).
 * 4. `targets.depth/bytes` change in the same transaction as the rows they count; memory follows
 *    only after the commit (targets.ts).
 * 5. A reading keeps its id, its seq and its receivedAt across retries and restarts, and its age
 *    across clock steps (clock-steps.ts).
 * 6. On a full disk appends wait and settlements still commit, or stay bounded (commit-round.ts).
 * 7. A reading is leased only once the sync that acknowledges its append came back (context.ts,
 *    durableSeq): a power cut never takes back a reading that was sent.
 * test/spool/model.test.ts checks 1, 2, 3, 5 and 7 on random runs against a reference model.
 *
 * The parts: open-spool.ts (wiring them), write-queue.ts (the queue and group commit),
 * commit-round.ts (a commit and its failures), admission.ts (the quota), transaction.ts (the rows),
 * durability.ts (the WAL fsync), checkpoints.ts (the WAL into spool.db), leasing.ts (order, expiry), in-flight.ts (what is out),
 * maintenance.ts (the periodic round), clock-steps.ts, targets.ts, statements.ts (the SQL),
 * reserve.ts, free-space.ts, stats.ts, dead-letters.ts, owner-lock.ts.
 * The commits run on the main thread: bench/spool.ts measures what a commit costs the event loop.
 */
import { fixedFrameClock, systemClock, type Clock } from '../../core/clock.js';
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { DeadLetterReason, DeadLetterStore, Spool, SpooledReading, SpoolStats } from '../interface.js';
import type { SqliteSpoolOptions } from './context.js';
import { isFatal, translateSqliteError } from './errors.js';
import { PRIORITIES } from './in-flight.js';
import { openSpool, type OpenSpool } from './open-spool.js';
import { spoolStats } from './stats.js';
import type { WriteQueue } from './write-queue.js';

export type { SqliteSpoolOptions, SpoolFaults } from './context.js';

export class SqliteSpool implements Spool {
  readonly #options: SqliteSpoolOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #listeners = new Set<(address: string) => void>();
  #open: OpenSpool | undefined;
  #failure: GatewayError | undefined;

  constructor(options: SqliteSpoolOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#clock = options.clock ?? (options.now === undefined ? systemClock : fixedFrameClock(options.now));
  }

  get deadLetters(): DeadLetterStore {
    if (this.#open === undefined) throw new GatewayError('INTERNAL', 'spool not started');
    return this.#open.deadLetters;
  }

  /** Set once the storage failed (see interface.ts): the spool acknowledges nothing more. */
  get failure(): GatewayError | undefined {
    return this.#failure;
  }

  async start(): Promise<void> {
    this.#failure = undefined;
    this.#open = openSpool(this.#options, this.#clock, {
      failure: () => this.#failure,
      emit: (address) => this.#emit(address),
      fail: (error) => this.#fail(error),
    });
    void this.#open.reserve.ensure();
    const stats = this.stats();
    this.#log.info({ depth: stats.depth, bytes: stats.bytes, deadLetters: stats.deadLetters, addresses: Object.keys(stats.byAddress).length },
      'spool opened');
  }

  async stop(): Promise<void> {
    const open = this.#open;
    if (open === undefined) return;
    this.#open = undefined;
    clearInterval(open.timer);
    // A step seen since the last commit or maintenance round is recorded now: after the restart
    // nothing monotonic is left to tell it by (clock-steps.ts).
    if (this.#failure === undefined) {
      try {
        open.ctx.steps.check(open.ctx.sql);
      } catch {
        // The restart rules then take over, as after a crash.
      }
    }
    // Commits what can be committed (nothing after a failure); appends still waiting fail as retryable.
    open.writes.stop();
    // Appends waiting for their fsync get it (and resolve) before the file closes; a reserve being
    // written is given up, so that nothing writes into the directory once stop() resolved.
    await Promise.all([open.durability.close(), open.reserve.stop()]);
    open.ctx.db.close();
    open.lock.release();
  }

  append(readings: readonly RoutedReading[], options: { signal?: AbortSignal } = {}): Promise<void> {
    if (readings.length === 0) return Promise.resolve();
    const open = this.#open;
    if (open === undefined) return Promise.reject(this.#failure ?? new GatewayError('INTERNAL', 'spool not started'));
    let bytes = 0;
    for (const r of readings) {
      bytes += r.payload.length;
      if (!Number.isInteger(r.priority) || r.priority < 0 || r.priority >= PRIORITIES) {
        return Promise.reject(new GatewayError('BAD_INPUT', `spool: priority ${r.priority} is not 0-9`));
      }
    }
    if (bytes > this.#options.maxBytes || readings.length > this.#options.maxReadings) {
      return Promise.reject(new GatewayError('PAYLOAD_TOO_LARGE',
        `spool: ${readings.length} readings of ${bytes} bytes can never fit (spool.maxBytes ${this.#options.maxBytes})`));
    }
    return open.writes.append(readings, bytes, options.signal);
  }

  async lease(address: string, max: number): Promise<SpooledReading[]> {
    const open = this.#open;
    const target = open?.ctx.targets.byAddress(address);
    if (open === undefined || target === undefined || max <= 0) return [];
    try {
      return open.leasing.lease(target, max);
    } catch (err) {
      const error = translateSqliteError(err, `leasing from ${address}`, this.#options.dataDir);
      if (isFatal(error)) this.#fail(error);
      throw error;
    }
  }

  ack(seqs: readonly number[]): Promise<void> {
    return this.#settle(seqs, (writes, owned) => writes.ack(owned));
  }

  async release(seqs: readonly number[]): Promise<void> {
    const open = this.#open;
    if (open === undefined) return;
    const touched = new Set<number>();
    for (const seq of seqs) {
      const flight = open.ctx.inFlight.release(seq);
      if (flight !== undefined) touched.add(flight.target);
    }
    for (const id of touched) this.#emit(open.ctx.targets.byId(id)!.address);
  }

  modify(seqs: readonly number[]): Promise<void> {
    return this.#settle(seqs, (writes, owned) => writes.modify(owned));
  }

  reject(seqs: readonly number[], reason: DeadLetterReason): Promise<void> {
    return this.#settle(seqs, (writes, owned) => writes.reject(owned, reason));
  }

  releaseAll(address?: string): void {
    const open = this.#open;
    if (open === undefined) return;
    const { targets, inFlight } = open.ctx;
    const only = address === undefined ? undefined : targets.byAddress(address);
    if (address !== undefined && only === undefined) return;
    inFlight.reset(only?.id);
    for (const target of only === undefined ? targets.all() : [only]) if (target.depth > 0) this.#emit(target.address);
  }

  addresses(): string[] {
    const open = this.#open;
    if (open === undefined) return [];
    return [...open.ctx.targets.all()].filter((t) => t.depth - open.ctx.inFlight.leasedFor(t.id) > 0).map((t) => t.address);
  }

  stats(): SpoolStats {
    return spoolStats(this.#open);
  }

  onAvailable(listener: (address: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Takes seqs out of flight and queues their settlement; those not in flight are ignored (settled
   * already). After a storage failure nothing is settled, and saying so is the caller's due.
   */
  #settle(seqs: readonly number[], commit: (writes: WriteQueue, owned: number[]) => Promise<void>): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const open = this.#open;
    const owned = open === undefined ? [] : seqs.filter((seq) => open.ctx.inFlight.beginSettle(seq) !== undefined);
    return owned.length === 0 ? Promise.resolve() : commit(open!.writes, owned);
  }

  #fail(error: GatewayError): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#log.fatal({ code: error.code, err: error.message },
      'spool: the storage failed; acknowledging nothing more. Restart the process: SQLite recovers the journal on open');
    this.#open?.writes.failAll(error);
    this.#options.onFatal?.(error);
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
