/**
 * The spool: the durable queue every reading passes through, live or backlog.
 *
 * Contract
 * - `append` resolves only once the readings are committed to disk (group commit: appends that
 *   arrive within a few milliseconds share one transaction). Resolved means durable.
 * - Readings leave in order per address: higher priority first, then arrival order.
 * - `lease` hands out readings that are not in flight; a leased reading is not leased again until
 *   it is released (or the lease is dropped by `releaseAll`, or the process restarts).
 * - Only `ack` (the upstream settled it `accepted`) deletes a reading. `release` returns it to its
 *   place in the queue; `modify` counts an attempt and returns it, or dead-letters it past the cap;
 *   `reject` moves it to the dead-letter store with the reason.
 * - Expired readings (TTL) are never leased: they are dropped or dead-lettered, and counted.
 * - Times: appended readings are stamped with the step-free clock (core/clock.ts, Clock.now);
 *   leased readings carry wall-clock times, corrected for every step of the system clock the
 *   spool saw since they were stored, so that age and expiry hold across clock steps.
 *
 * Error rules
 * - Every error is a GatewayError. `retryable: true` (SPOOL_FULL, DISK_FULL, IO) means the same call
 *   may succeed later: ingest turns it into backpressure, never into an acknowledgement.
 * - Under the `block` policy and on a full disk, `append` does not fail: it waits until there is
 *   room (pass an AbortSignal to give up); the readings are not stored until it resolves.
 * - SPOOL_CORRUPT is not retryable: the database file is unusable; it is kept, never deleted.
 * - STORAGE_FAILED is not retryable: an I/O error or a failed fsync. The spool stops: appends
 *   still waiting and every later call are refused with it (an append refused so may or may not be
 *   on disk: it was not acknowledged), and the owner is told once (the gateway then exits, so that
 *   systemd restarts it and SQLite recovers the journal).
 * - A full disk is not an error: appends wait as under `block`; settlements still commit.
 * - SPOOL_IN_USE is not retryable: `start` found another owner of the directory (another gateway
 *   or Node-RED runtime on the same dataDir); two owners would send the same readings twice.
 * - ack/release/modify/reject of an id that is not in flight is ignored (it was settled already,
 *   or released by a reconnect): settlement is idempotent.
 */
import type { RoutedReading } from '../core/envelope.js';

/** A reading as the spool hands it out. */
export interface SpooledReading extends RoutedReading {
  /** Position in the spool: the handle for ack/release/modify/reject. */
  seq: number;
  /** How many times the upstream returned it `modified` so far. */
  attempts: number;
}

/** Why a reading was dead-lettered: the AMQP error condition and description. */
export interface DeadLetterReason {
  condition: string;
  description?: string;
}

export interface DeadLetter extends SpooledReading {
  reason: DeadLetterReason;
  deadAt: number;
}

export type DropReason = 'expired' | 'evicted';

export interface SpoolStats {
  /** Readings waiting or in flight. */
  depth: number;
  /** Payload bytes of those readings. */
  bytes: number;
  /** Age in ms of the oldest reading; 0 when empty. */
  oldestAgeMs: number;
  inFlight: number;
  /** Readings dead-lettered since start (a counter). */
  deadLettered: number;
  /** Readings in the dead-letter store now. */
  deadLetters: number;
  dropped: Record<DropReason, number>;
  /** Per address: depth (waiting or in flight). */
  byAddress: Record<string, number>;
  /** True while appends wait for room (quota under `block`, or a full disk). */
  blocked: boolean;
  /** True while commits fail for lack of disk space. */
  diskFull: boolean;
  /** Transactions committed since start (appends share them: group commit). */
  commits: number;
}

export interface Spool {
  start(): Promise<void>;
  stop(): Promise<void>;

  append(readings: readonly RoutedReading[], options?: { signal?: AbortSignal }): Promise<void>;

  /** Up to `max` readings for `address` that are not in flight, in order; marks them in flight. */
  lease(address: string, max: number): Promise<SpooledReading[]>;
  ack(seqs: readonly number[]): Promise<void>;
  release(seqs: readonly number[]): Promise<void>;
  /** Counts an attempt; dead-letters (condition `uplink:max-attempts`) once the cap is reached. */
  modify(seqs: readonly number[]): Promise<void>;
  reject(seqs: readonly number[], reason: DeadLetterReason): Promise<void>;
  /** Everything in flight (for `address`, or all) returns to the queue in its original order. */
  releaseAll(address?: string): void;

  /**
   * Addresses with readings waiting (not in flight). A reading whose append is not yet durable
   * counts here before a lease returns it; onAvailable announces it once a lease can.
   */
  addresses(): string[];
  stats(): SpoolStats;

  /** Called (synchronously) whenever readings may have become available to lease. */
  onAvailable(listener: (address: string) => void): () => void;
}

/** The dead-letter store, used by `uplink dlq` whether the gateway runs or not. */
export interface DeadLetterStore {
  list(options?: { limit?: number; afterSeq?: number }): DeadLetter[];
  get(seq: number): DeadLetter | undefined;
  /** Moves dead letters back into the spool (all when `seqs` is omitted); returns how many. */
  replay(seqs?: readonly number[]): number;
  purge(seqs?: readonly number[]): number;
  count(): number;
}
