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
 * waits (full under `block`, disk full) holds the buses back instead of filling memory. A
 * retryable failure is tried again; a batch too large for the spool is split; anything else is
 * counted (`spool_error`) and logged. `stop()` resolves once every queued reading is committed,
 * or after `graceMs` without room, counting what is left as `stopped`.
 */
import type { RoutedReading } from '../../core/envelope.js';
import { GatewayError, isGatewayError, messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { RateLimitedLog } from '../../core/rate-limited-log.js';
import type { Spool } from '../../spool/interface.js';

const MAX_BATCH = 512;

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
  #batchLimit = MAX_BATCH;

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

  async #drain(): Promise<void> {
    const { spool, log, limited, count } = this.#options;
    const signal = this.#abort.signal;
    while (this.#queue.length > 0 && !signal.aborted) {
      const batch = this.#queue.splice(0, this.#batchLimit);
      for (;;) {
        try {
          await spool.append(batch, { signal });
          for (const reading of batch) count('ingested', reading.address);
          break;
        } catch (err) {
          if (signal.aborted) {
            this.#queue.unshift(...batch);
            return;
          }
          if (isGatewayError(err) && err.code === 'PAYLOAD_TOO_LARGE' && batch.length > 1) {
            this.#batchLimit = Math.max(1, Math.floor(batch.length / 2));
            this.#queue.unshift(...batch);
            break;
          }
          if (isGatewayError(err) && err.retryable) {
            limited.write('warn', 'modbus:spool_retry', { err: err.message }, 'modbus: spool append failed; retrying');
            await new Promise((resolve) => setTimeout(resolve, 200));
            continue;
          }
          count('rejected', 'spool_error', batch.length);
          log.error({ err: messageOf(err), readings: batch.length }, 'modbus: readings could not be stored');
          break;
        }
      }
      this.#release();
    }
  }
}
