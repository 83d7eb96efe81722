/**
 * Readings on their way to the spool: appended in order, in batches, one append at a time.
 *
 * Each append is a commit (an fsync with durability full) that better-sqlite3 runs on the event
 * loop: one commit per poll would cap a bus at the commit rate and spend most of its CPU there.
 * Nobody waits for a polled value's acknowledgement, so the first reading waits `batchMs` for the
 * polls behind it, and they share one commit (bench/modbus.ts: RTU polls/s ×2.5 with 5 ms).
 *
 * Polls produce readings at the pace of the bus, not of the disk; the queue between them is
 * bounded: `room()` resolves only while fewer than `highWater` readings wait, so a spool that
 * waits (full under `block`, disk full) holds the buses back instead of filling memory. The
 * appends themselves follow ../append-in-order.ts (shared with serial ingest): a retryable
 * failure is tried again, a batch too large for the spool is split, anything else is counted
 * (`spool_error`) and logged. `stop()` resolves once every queued reading is committed, or after
 * `graceMs` without room, counting what is left as `stopped`.
 */
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError, messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { RateLimitedLog } from '../../core/rate-limited-log.js';
import type { Spool } from '../../spool/interface.js';
import { appendInOrder, MAX_BATCH } from '../append-in-order.js';

export interface SpoolWriterOptions {
  spool: Pick<Spool, 'append'>;
  log: Logger;
  limited: RateLimitedLog;
  count: (record: 'ingested' | 'rejected', key: string, n?: number) => void;
  highWater?: number;
  graceMs?: number;
  /** How long the first reading waits for others to share its commit (default 5 ms). */
  batchMs?: number;
}

export class SpoolWriter {
  readonly #options: SpoolWriterOptions;
  readonly #highWater: number;
  /** Aborts the appends when a stop gives up; a new one for each stop, so that a start after it appends again. */
  #abort = new AbortController();
  #queue: RoutedReading[] = [];
  #draining: Promise<void> | undefined;
  #batchTimer: NodeJS.Timeout | undefined;
  #batched: (() => void) | undefined;
  #waiters: Array<() => void> = [];
  /** Readings per append: bounded, and halved when the spool says a batch can never fit. */
  readonly #batch = { limit: MAX_BATCH };

  constructor(options: SpoolWriterOptions) {
    this.#options = options;
    this.#highWater = options.highWater ?? 1000;
  }

  /** Readings waiting for the spool (the batch being appended not included). */
  get pending(): number {
    return this.#queue.length;
  }

  /** Polls wait for room now. */
  get holding(): boolean {
    return this.#waiters.length > 0;
  }

  push(reading: RoutedReading): void {
    this.#queue.push(reading);
    if (this.#draining !== undefined) return;
    const batchMs = this.#options.batchMs ?? 5;
    this.#draining = new Promise<void>((resolve) => {
      this.#batched = resolve;
      this.#batchTimer = setTimeout(resolve, batchMs);
    }).then(() => this.#drain()).finally(() => { this.#draining = undefined; });
  }

  room(): Promise<void> {
    if (this.#queue.length < this.#highWater) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async stop(): Promise<void> {
    // No more waiting for company: what is queued is stored now.
    clearTimeout(this.#batchTimer);
    this.#batched?.();
    const graceMs = this.#options.graceMs ?? 5000;
    const abort = this.#abort;
    const grace = setTimeout(() => abort.abort(new GatewayError('IO', 'modbus ingest stopped')), graceMs);
    while (this.#draining !== undefined) await this.#draining;
    clearTimeout(grace);
    if (abort.signal.aborted) this.#abort = new AbortController();
    const left = this.#queue.splice(0).length;
    this.#release();
    if (left > 0) {
      this.#options.count('rejected', 'stopped', left);
      this.#options.log.error({ readings: left, graceMs }, 'modbus: readings polled but not stored: the spool had no room for them before the stop grace ran out');
    }
  }

  #release(): void {
    if (this.#queue.length >= this.#highWater) return;
    for (const wake of this.#waiters.splice(0)) wake();
  }

  #drain(): Promise<void> {
    const { spool, log, limited, count } = this.#options;
    return appendInOrder(this.#queue, {
      spool, signal: this.#abort.signal, batch: this.#batch,
      stored: (batch) => { for (const reading of batch) count('ingested', reading.address); },
      retrying: (err) => limited.write('warn', 'modbus:spool_retry', { err: err.message }, 'modbus: spool append failed; retrying'),
      failed: (batch, err) => {
        count('rejected', 'spool_error', batch.length);
        log.error({ err: messageOf(err), readings: batch.length }, 'modbus: readings could not be stored');
      },
      settled: () => this.#release(),
    });
  }
}
