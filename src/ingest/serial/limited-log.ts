/**
 * Bad-input logging at a limited rate: per key, at most `burst` lines per `intervalMs`; the lines
 * left out are counted and reported (`suppressed: n`) on the next line of that key. The stats
 * counters stay exact either way. (A small local one: this module may not import ingest/mqtt.)
 */
import type { Logger } from '../../core/logger.js';

export class LimitedLog {
  readonly #log: Logger;
  readonly #burst: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, { start: number; logged: number; suppressed: number }>();

  constructor(log: Logger, options: { burst?: number; intervalMs?: number; now?: () => number } = {}) {
    this.#log = log;
    this.#burst = options.burst ?? 10;
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.#now();
    let window = this.#windows.get(key);
    if (window === undefined || now - window.start >= this.#intervalMs) {
      if (window !== undefined && window.suppressed > 0) fields = { ...fields, suppressed: window.suppressed };
      window = { start: now, logged: 0, suppressed: 0 };
      this.#windows.set(key, window);
    }
    if (window.logged >= this.#burst) {
      window.suppressed += 1;
      return;
    }
    window.logged += 1;
    this.#log.warn(fields, message);
  }
}
