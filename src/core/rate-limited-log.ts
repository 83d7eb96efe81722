/**
 * Logging of bad input at a limited rate: per kind of event (`key`), at most `burst` lines per
 * `intervalMs`. What is left out is counted and reported on the next line of that kind
 * (`suppressed: n`), so a device that floods garbage cannot flood the journal, and nothing goes
 * unmentioned. The counters in stats() stay exact either way.
 */
import { monotonicMs } from './clock.js';
import type { Logger } from './logger.js';

type Level = 'error' | 'warn' | 'info' | 'debug';

interface Window {
  start: number;
  logged: number;
  suppressed: number;
}

export class RateLimitedLog {
  readonly #log: Logger;
  readonly #burst: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, Window>();

  constructor(log: Logger, options: { burst?: number; intervalMs?: number; now?: () => number } = {}) {
    this.#log = log;
    this.#burst = options.burst ?? 10;
    this.#intervalMs = options.intervalMs ?? 60_000;
    // Not Date.now: after a step of the system clock back, a window would stay open (and its kind silent) that long.
    this.#now = options.now ?? monotonicMs;
  }

  write(level: Level, key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.#now();
    let window = this.#windows.get(key);
    if (window === undefined || now - window.start >= this.#intervalMs) {
      const suppressed = window?.suppressed ?? 0;
      window = { start: now, logged: 0, suppressed: 0 };
      this.#windows.set(key, window);
      if (suppressed > 0) fields = { ...fields, suppressed };
    }
    if (window.logged >= this.#burst) {
      window.suppressed += 1;
      return;
    }
    window.logged += 1;
    this.#log[level](fields, message);
  }
}
