/**
 * Handing readings out in order, and removing the ones whose TTL passed. Which readings may be
 * handed out is the in-flight book's call (in-flight.ts), and only those known to be on disk
 * (ctx.durableSeq); this file reads the rows and corrects their times for clock steps (clock-steps.ts).
 */
import type { SpooledReading } from '../interface.js';
import { MAX_SETTLING, type SpoolContext } from './context.js';
import { insertDeadLetter } from './dead-letters.js';
import { isFatal, translateSqliteError } from './errors.js';
import { PRIORITIES } from './in-flight.js';
import { addDelta, type Deltas, type Target } from './targets.js';

/** A reading row as the statements of statements.ts return it in raw mode. */
type RawRow = [seq: number, id: string, priority: number, topic: string, payload: Buffer, receivedAt: number, expiresAt: number | null, attempts: number];
/** The same, with the target's address last (the joined statements). */
type RawRowWithAddress = [...RawRow, address: string];

export class Leasing {
  readonly #ctx: SpoolContext;

  constructor(ctx: SpoolContext) {
    this.#ctx = ctx;
  }

  /** Up to `max` readings of `target` that are not in flight, in order; marks them in flight. */
  lease(target: Target, max: number): SpooledReading[] {
    const { sql, inFlight, steps } = this.#ctx;
    // Settlements that cannot commit (a full disk) must not grow without bound: stop sending.
    if (this.#ctx.failure !== undefined || inFlight.settling >= MAX_SETTLING) return [];
    const out: SpooledReading[] = [];
    const expired: SpooledReading[] = [];
    const now = steps.wallNow();
    const bySeq = sql.get('bySeq').raw(true);
    const scan = sql.get('scan').raw(true);
    for (let priority = PRIORITIES - 1; priority >= 0 && out.length < max; priority--) {
      const redo = inFlight.redo(target.id, priority);
      while (redo.length > 0 && out.length < max) {
        const seq = redo[0]!;
        const row = bySeq.get(seq) as RawRow | undefined;
        const reading = row === undefined ? undefined : toReading(this.#ctx, target.address, row);
        if (reading === undefined || isExpired(reading, now)) {
          inFlight.discard(seq, target.id, priority);
          if (reading !== undefined) expired.push(reading);
          continue;
        }
        inFlight.take(seq, { target: target.id, priority, bytes: reading.payload.length });
        out.push(reading);
      }
      while (out.length < max) {
        const rows = scan.all(target.id, priority, inFlight.cursor(target.id, priority), this.#ctx.durableSeq, Math.max(16, max - out.length)) as RawRow[];
        if (rows.length === 0) break;
        for (const row of rows) {
          if (out.length >= max) break;
          const seq = row[0];
          if (inFlight.busy(seq)) {
            inFlight.advance(target.id, priority, seq);
            continue;
          }
          const reading = toReading(this.#ctx, target.address, row);
          if (isExpired(reading, now)) {
            inFlight.advance(target.id, priority, seq);
            expired.push(reading);
            continue;
          }
          inFlight.take(seq, { target: target.id, priority, bytes: reading.payload.length });
          out.push(reading);
        }
      }
    }
    if (expired.length > 0) this.expire(expired);
    return out;
  }

  /** Finds readings whose TTL passed and that nobody holds, and removes them. */
  sweep(): void {
    const { sql, steps, inFlight } = this.#ctx;
    const now = steps.wallNow();
    const expired: SpooledReading[] = [];
    for (const segment of steps.segments()) {
      const rows = sql.get('expiredBetween').raw(true).all(now - segment.correction, segment.after + 1,
        Number.isFinite(segment.upto) ? segment.upto : Number.MAX_SAFE_INTEGER) as RawRowWithAddress[];
      for (const row of rows) if (!inFlight.busy(row[0])) expired.push(toReading(this.#ctx, row[8], row));
    }
    if (expired.length > 0) this.expire(expired);
  }

  /** Removes readings whose TTL passed: dropped or dead-lettered, and counted either way. */
  expire(readings: SpooledReading[]): void {
    const { db, sql, targets, counters, log, options } = this.#ctx;
    const deadLetter = options.expired === 'dead-letter';
    const deltas: Deltas = new Map();
    let removed = 0;
    try {
      db.transaction(() => {
        options.faults?.inTransaction?.();
        const remove = sql.get('remove');
        for (const r of readings) {
          if (remove.run(r.seq).changes !== 1) continue;
          if (deadLetter) insertDeadLetter(db, r, { condition: 'uplink:expired', description: 'the TTL passed before it was forwarded' }, this.#ctx.steps.wallNow());
          const target = targets.byAddress(r.address);
          if (target !== undefined) addDelta(deltas, target.id, -1, -r.payload.length);
          removed += 1;
        }
        targets.writeDeltas(sql, deltas);
      })();
    } catch (err) {
      const error = translateSqliteError(err, 'removing expired readings', options.dataDir);
      if (isFatal(error)) return this.#ctx.fail(error);
      // They stay on disk and the next sweep finds them again; they are never leased meanwhile.
      log.warn({ err: error.message }, 'spool: could not remove expired readings; will retry');
      return;
    }
    targets.applyDeltas(deltas);
    if (deadLetter) {
      counters.deadLettered += removed;
      counters.deadLetterCount += removed;
    } else {
      counters.dropped.expired += removed;
    }
    if (removed > 0) log.warn({ count: removed, action: options.expired }, 'spool: readings expired before they could be forwarded');
  }

}

function isExpired(reading: SpooledReading, now: number): boolean {
  return reading.expiresAt !== undefined && reading.expiresAt <= now;
}

/** A row as a reading, its times corrected for the clock steps recorded after it. */
function toReading(ctx: SpoolContext, address: string, row: RawRow | RawRowWithAddress): SpooledReading {
  const correction = ctx.steps.correction(row[0]);
  const reading: SpooledReading = {
    seq: row[0], id: row[1], address, priority: row[2], topic: row[3], payload: row[4], receivedAt: row[5] + correction, attempts: row[7],
  };
  if (row[6] !== null) reading.expiresAt = row[6] + correction;
  return reading;
}

/** Reads one reading by seq, with its address and corrected times (settlements that dead-letter it). */
export function readReading(ctx: SpoolContext, seq: number): SpooledReading | undefined {
  const row = ctx.sql.get('withAddress').raw(true).get(seq) as RawRowWithAddress | undefined;
  return row === undefined ? undefined : toReading(ctx, row[8], row);
}
