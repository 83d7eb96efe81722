/**
 * Time for readings. A Raspberry Pi has no real-time clock: it boots in 1970 (or at the last time
 * fake-hwclock saved), and NTP later steps the system clock by minutes or years. A reading stamped
 * with `Date.now()` before the step and one stamped after are then in different frames, and a TTL
 * computed across the two expires a backlog wholesale (forward step) or never (backward step).
 *
 * So readings are stamped with `now()`: the system time at process start, advanced by the
 * monotonic clock. It never steps within a process (NTP's slewing moves both clocks alike). The
 * spool compares it with `wall()` when it commits, and so sees every step exactly: see
 * spool/sqlite/clock-steps.ts for how stored times are corrected.
 */
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** ms since the epoch, step-free: the system clock at start plus the monotonic time since. */
  now(): number;
  /** The system clock (ms since the epoch) as it reads now; steps when the time is set. */
  wall(): number;
}

/** No plausible clock reads earlier than this: a stamp before it was taken with an unset clock. */
export const CLOCK_FLOOR = Date.UTC(2025, 0, 1);

const anchor = Date.now() - performance.now();

/** The process's clock. One instance, so that every stamp of the process shares its anchor. */
export const systemClock: Clock = {
  now: () => Math.round(anchor + performance.now()),
  wall: () => Date.now(),
};

/**
 * ms on the monotonic clock, for intervals, timeouts and caches: an interval measured with
 * `Date.now()` is off by any step in between, and after a step back it stays "not yet" for as long
 * as the step was.
 */
export const monotonicMs = (): number => performance.now();

/** A clock that never steps (tests, tools): both readings are the same function. */
export function fixedFrameClock(now: () => number): Clock {
  return { now, wall: now };
}
