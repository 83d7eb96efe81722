/**
 * Keeps the spool's times right across steps of the system clock (see core/clock.ts).
 *
 * Readings arrive stamped in step-free time (Clock.now). A commit stores them in wall time:
 * stamp + `offset`, the difference between the system clock and the step-free clock as last
 * recorded. When that difference changes by a second or more, the clock was stepped: the step is
 * written to `clock_steps` as (upto_seq, delta), meaning "every reading with seq <= upto_seq was
 * stored `delta` ms off". A reading's time is its stored time plus the deltas of every step
 * recorded after it. No reading row is ever rewritten for a step: on an SD card that would be the
 * whole backlog written again.
 *
 * A step is recorded by the next commit or maintenance round, but what the spool hands out follows
 * it at once (`wallNow` sees it as pending): the forwarder sends `expiresAt - Date.now()` as the
 * AMQP ttl, and a reading leased in between in the old frame would go out with a ttl of 1 ms after
 * a step forward (the broker drops what the spool deletes as accepted), or of years after one back.
 *
 * Across a restart nothing monotonic survives, so two rules catch a clock that was wrong then or is
 * wrong now: readings stored before CLOCK_FLOOR (a Pi that ran in 1970 and stopped before NTP set
 * the time) and readings newer than the clock at start (the clock went back across the restart): the
 * newest is then taken as received at the start and the others keep their spacing, so their TTL
 * counts from then: not expired wholesale, and not kept for ever.
 */
import { CLOCK_FLOOR, type Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { Statements } from './statements.js';

/** A change of wall minus step-free time at least this large is a step, not jitter or slewing. */
const STEP_MS = 1000;
/** At start, readings this far ahead of the clock mean the clock went back across the restart. */
const AHEAD_MS = 60_000;

interface Step {
  upto: number;
  delta: number;
}

export interface Segment {
  /** Seqs in (after, upto]; upto Infinity for the last. */
  after: number;
  upto: number;
  correction: number;
}

export class ClockSteps {
  readonly #clock: Clock;
  readonly #log: Logger;
  #steps: Step[] = [];
  /** Wall minus step-free time, as stored readings assume it. */
  #offset = 0;
  /** A step seen by `wallNow` and not recorded yet: every stored reading is that far off too. */
  #pending = 0;

  constructor(clock: Clock, log: Logger) {
    this.#clock = clock;
    this.#log = log;
  }

  /** What to add to a stamp to store it: wall minus step-free time as last recorded. */
  get offset(): number {
    return this.#offset;
  }

  /**
   * The spool's wall time now: step-free time plus the recorded offset, plus a step not recorded
   * yet, which `correction` and `segments` then add to every reading until `check` records it
   * (readings stored meanwhile are still in the old frame). Call it first, so that one lease or
   * sweep sees one frame.
   */
  wallNow(): number {
    const now = this.#clock.now();
    const moved = this.#clock.wall() - now - this.#offset;
    this.#pending = Math.abs(moved) < STEP_MS ? 0 : moved;
    return now + this.#offset + this.#pending;
  }

  /** How far off the stored times of `seq` are (add it to them). */
  correction(seq: number): number {
    let sum = this.#pending;
    for (let i = this.#steps.length - 1; i >= 0 && this.#steps[i]!.upto >= seq; i--) sum += this.#steps[i]!.delta;
    return sum;
  }

  /** The seq ranges that share one correction, for queries on stored times. */
  segments(): Segment[] {
    const out: Segment[] = [];
    let after = 0;
    let correction = this.#steps.reduce((sum, s) => sum + s.delta, this.#pending);
    for (const step of this.#steps) {
      out.push({ after, upto: step.upto, correction });
      after = step.upto;
      correction -= step.delta;
    }
    out.push({ after, upto: Number.POSITIVE_INFINITY, correction });
    return out;
  }

  /** At start: the recorded steps, and the two restart rules above. Writes only when a rule applies. */
  load(sql: Statements): void {
    // Without a step the two clocks differ only by rounding (Date.now truncates, Clock.now rounds):
    // taken for an offset, it would move every reading's time by a millisecond.
    const offset = this.#clock.wall() - this.#clock.now();
    this.#offset = Math.abs(offset) < STEP_MS ? 0 : offset;
    this.#steps = (sql.get('steps').all() as Array<{ upto_seq: number; delta: number }>).map((r) => ({ upto: r.upto_seq, delta: r.delta }));
    const newest = sql.get('newest').get() as { seq: number; received_at: number } | undefined;
    if (newest === undefined) return;
    const now = this.wallNow();
    const received = newest.received_at + this.correction(newest.seq);
    const unset = received < CLOCK_FLOOR && now >= CLOCK_FLOOR;
    if (!unset && received <= now + AHEAD_MS) return;
    this.#log.warn({ shiftMs: now - received, newestReceivedAt: new Date(received).toISOString(), now: new Date(now).toISOString() },
      unset ? 'spool: readings were stored while the clock was not set; their age counts from now'
        : 'spool: the clock is behind the readings stored before the restart; their age counts from now');
    this.#record(sql, newest.seq, now - received);
  }

  /** Records a step if the clock moved since the last record, for every seq given so far. */
  check(sql: Statements): void {
    const now = this.#clock.now();
    const offset = this.#clock.wall() - now;
    const delta = offset - this.#offset;
    if (Math.abs(delta) < STEP_MS) {
      this.#pending = 0;
      return;
    }
    const upto = sql.maxSeq();
    // If this write fails (a full disk), the offset stays as it was and later commits store in the
    // old frame, consistent with the rows before them (the step stays pending for them); it is
    // recorded on the next try.
    if (upto > 0) this.#record(sql, upto, delta);
    this.#offset = offset;
    this.#pending = 0;
    this.#log.warn({ stepMs: delta, from: new Date(now + offset - delta).toISOString(), to: new Date(now + offset).toISOString(), correctedUpToSeq: upto },
      'the system clock was stepped: stored readings keep their age and expiry');
  }

  /** Steps older than every reading on disk correct nothing any more. */
  prune(sql: Statements, oldestSeq: number | undefined): void {
    const keepFrom = oldestSeq ?? Number.POSITIVE_INFINITY;
    if (this.#steps.length === 0 || this.#steps[0]!.upto >= keepFrom) return;
    sql.get('pruneSteps').run(Number.isFinite(keepFrom) ? keepFrom : Number.MAX_SAFE_INTEGER);
    this.#steps = this.#steps.filter((s) => s.upto >= keepFrom);
  }

  #record(sql: Statements, upto: number, delta: number): void {
    sql.get('addStep').run(upto, delta);
    const last = this.#steps.at(-1);
    if (last !== undefined && last.upto === upto) last.delta += delta;
    else this.#steps.push({ upto, delta });
  }
}
