/**
 * Admission under the quota (spool.maxReadings, spool.maxBytes), inside the transaction: which
 * queued writes fit now, and under `drop-oldest` which readings make room for them.
 */
import type { SpoolContext } from './context.js';
import { PRIORITIES } from './in-flight.js';
import { addDelta } from './targets.js';
import type { Outcome, WriteOp } from './write-ops.js';

/**
 * Settlements always fit (they free room); appends are admitted in order while they fit the
 * quota, after evicting the oldest readings under `drop-oldest`. Fills outcome.committed and
 * outcome.waiting.
 */
export function admit(ctx: SpoolContext, ops: WriteOp[], outcome: Outcome): void {
  const { options, inFlight } = ctx;
  let { depth, bytes } = ctx.targets.totals();
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
      const freed = evict(ctx, overCount, overBytes, outcome);
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
function evict(ctx: SpoolContext, count: number, bytes: number, outcome: Outcome): { count: number; bytes: number } {
  const { sql, inFlight } = ctx;
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
