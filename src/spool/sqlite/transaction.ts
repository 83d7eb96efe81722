/**
 * One transaction of queued writes: admission under the quota (admission.ts), then each write
 * applied to the rows, and the targets' totals with them. Memory is not touched here (but for a
 * target created by an append, forgotten again if the transaction fails): commit-round.ts applies
 * the outcome once the transaction committed.
 */
import type { GatewayError } from '../../core/errors.js';
import type { DeadLetterReason } from '../interface.js';
import { admit } from './admission.js';
import type { SpoolContext } from './context.js';
import { insertDeadLetter } from './dead-letters.js';
import { translateSqliteError } from './errors.js';
import { readReading } from './leasing.js';
import { addDelta, type Target } from './targets.js';
import { emptyOutcome, type Outcome, type WriteOp } from './write-ops.js';

/** Runs of consecutive acked seqs at least this long are deleted as a range. */
const MIN_RANGE = 8;

/** One transaction for `ops`: what it did, or the error (already translated) it failed with. */
export function commitWrites(ctx: SpoolContext, ops: WriteOp[]): Outcome | GatewayError {
  const created: Target[] = [];
  const outcome = emptyOutcome();
  try {
    ctx.db.transaction(() => {
      ctx.options.faults?.inTransaction?.();
      admit(ctx, ops, outcome);
      for (const op of outcome.committed) apply(ctx, op, outcome, created);
      ctx.targets.writeDeltas(ctx.sql, outcome.deltas);
    })();
    return outcome;
  } catch (err) {
    for (const target of created) ctx.targets.forget(target);
    return translateSqliteError(err, 'committing', ctx.options.dataDir);
  }
}

function apply(ctx: SpoolContext, op: WriteOp, outcome: Outcome, created: Target[]): void {
  const { sql, targets, steps, options } = ctx;
  switch (op.kind) {
    case 'append': {
      // Stamps are step-free (core/clock.ts); stored in wall time as last recorded, in whole ms
      // (rounded here, once: what is leased is what was stored).
      const offset = steps.offset;
      const now = ctx.clock.now();
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
      for (const seq of deleted) removed(ctx, seq, outcome);
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
        deadLetter(ctx, seq, { condition: 'uplink:max-attempts', description: `returned as modified ${attempts} times (spool.maxAttempts)` }, outcome);
      }
      return;
    }
    case 'reject':
      for (const seq of op.seqs) deadLetter(ctx, seq, op.reason, outcome);
      return;
  }
}

function deadLetter(ctx: SpoolContext, seq: number, reason: DeadLetterReason, outcome: Outcome): void {
  const reading = readReading(ctx, seq);
  if (reading === undefined) return;
  insertDeadLetter(ctx.db, reading, reason, ctx.steps.wallNow());
  outcome.deadLettered += 1;
  if (ctx.sql.get('remove').run(seq).changes === 1) removed(ctx, seq, outcome);
}

/** A settled reading left the queue: its target's totals follow. */
function removed(ctx: SpoolContext, seq: number, outcome: Outcome): void {
  const flight = ctx.inFlight.get(seq);
  if (flight !== undefined) addDelta(outcome.deltas, flight.target, -1, -flight.bytes);
}
