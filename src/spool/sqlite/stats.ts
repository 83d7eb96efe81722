/** The spool's numbers (SpoolStats, interface.ts), from memory but for the oldest reading's age. */
import type { SpoolStats } from '../interface.js';
import type { OpenSpool } from './open-spool.js';

export function spoolStats(open: OpenSpool | undefined): SpoolStats {
  const byAddress: Record<string, number> = {};
  let depth = 0;
  let bytes = 0;
  let oldestAgeMs = 0;
  if (open !== undefined) {
    for (const t of open.ctx.targets.all()) {
      depth += t.depth;
      bytes += t.bytes;
      if (t.depth > 0) byAddress[t.address] = t.depth;
    }
    const oldest = depth > 0 ? open.ctx.sql.get('oldest').get() as { seq: number; received_at: number } | undefined : undefined;
    if (oldest !== undefined) oldestAgeMs = Math.max(0, open.ctx.steps.wallNow() - oldest.received_at - open.ctx.steps.correction(oldest.seq));
  }
  const counters = open?.ctx.counters;
  return {
    depth, bytes, oldestAgeMs, inFlight: open?.ctx.inFlight.leased ?? 0,
    deadLettered: counters?.deadLettered ?? 0, deadLetters: counters?.deadLetterCount ?? 0,
    dropped: { expired: counters?.dropped.expired ?? 0, evicted: counters?.dropped.evicted ?? 0 }, byAddress,
    blocked: open?.writes.blocked ?? false, diskFull: open?.writes.diskFull ?? false, commits: counters?.commits ?? 0,
  };
}
