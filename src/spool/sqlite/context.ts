/**
 * What the parts of the SQLite spool share while it is open: the connection and its statements,
 * the targets, the in-flight book, the clock steps, the counters, and the two ways out: `emit`
 * (readings may be leasable) and `fail` (the storage failed: stop, see errors.ts).
 */
import type { Clock } from '../../core/clock.js';
import type { GatewayError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { DropReason } from '../interface.js';
import type { ClockSteps } from './clock-steps.js';
import type { Db } from './database.js';
import type { SyncFn } from './durability.js';
import type { InFlight } from './in-flight.js';
import type { Statements } from './statements.js';
import type { Targets } from './targets.js';

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
  /**
   * Called once when the storage failed (an I/O error, a failed fsync, a corrupt file): the spool
   * acknowledges nothing more. The gateway exits, so that systemd restarts it and SQLite recovers.
   */
  onFatal?: (error: GatewayError) => void;
  /** How often to look for expired readings, clock steps, other processes' changes and free pages. */
  maintenanceMs?: number;
  /** How long to wait before retrying a commit that failed on a full disk. */
  diskFullRetryMs?: number;
  /** Bytes kept aside for settlements on a full disk (reserve.ts); 0: none. */
  reserveBytes?: number;
  /** The clock readings are stamped with (core/clock.ts); systemClock when unset. */
  clock?: Clock;
  /** Tests: a clock that never steps, as a function (wall = step-free). */
  now?: () => number;
  /** Tests: faults injected for real into the commit path. */
  faults?: SpoolFaults;
}

export interface SpoolFaults {
  /** Called inside every write transaction; what it throws (an SQLite-shaped error) fails the commit. */
  inTransaction?: () => void;
  /** Replaces fdatasync of the WAL. */
  sync?: SyncFn;
}

export interface Counters {
  commits: number;
  deadLettered: number;
  deadLetterCount: number;
  dropped: Record<DropReason, number>;
}

export interface SpoolContext {
  readonly options: SqliteSpoolOptions;
  readonly log: Logger;
  readonly clock: Clock;
  readonly db: Db;
  readonly sql: Statements;
  readonly targets: Targets;
  readonly inFlight: InFlight;
  readonly steps: ClockSteps;
  readonly counters: Counters;
  /** Set once the storage failed. */
  readonly failure: GatewayError | undefined;
  /**
   * The highest seq known to be on disk: a reading above it is committed but its fsync has not
   * come back, and it is not leased (invariant 7 of sqlite-spool.ts). Raised once a sync that was
   * asked for after its commit came back (commit-round.ts, maintenance.ts).
   */
  durableSeq: number;
  emit(address: string): void;
  /** The storage failed: log it once, reject what waits, refuse what comes, call onFatal. */
  fail(error: GatewayError): void;
}

/** Settlements waiting for their commit beyond this stop leasing: on a full disk they stay bounded. */
export const MAX_SETTLING = 8192;
