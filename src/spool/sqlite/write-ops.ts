/**
 * The writes the write queue commits (write-queue.ts), and what one transaction of them did
 * (transaction.ts), which memory follows only once it committed (commit-round.ts).
 */
import type { RoutedReading } from '../../core/envelope.js';
import type { GatewayError } from '../../core/errors.js';
import type { DeadLetterReason } from '../interface.js';
import type { Deltas, Target } from './targets.js';

export type Settle = { resolve: () => void; reject: (err: GatewayError) => void };
export type AppendOp = Settle & { kind: 'append'; readings: readonly RoutedReading[]; bytes: number };
export type AckOp = Settle & { kind: 'ack'; seqs: number[] };
export type SettleOp = AckOp | (Settle & { kind: 'modify'; seqs: number[] }) | (Settle & { kind: 'reject'; seqs: number[]; reason: DeadLetterReason });
export type WriteOp = AppendOp | SettleOp;

/** What one transaction did, applied to memory only after it committed. */
export interface Outcome {
  committed: WriteOp[];
  /** Appends that did not fit the quota: they wait, in order, before anything queued since. */
  waiting: WriteOp[];
  deltas: Deltas;
  /** Settled seqs that go back to the queue (modify below the attempt cap). */
  requeue: Set<number>;
  /** Targets that got readings. */
  appended: Set<Target>;
  evicted: number;
  deadLettered: number;
}

export function emptyOutcome(): Outcome {
  return { committed: [], waiting: [], deltas: new Map(), requeue: new Set(), appended: new Set(), evicted: 0, deadLettered: 0 };
}
