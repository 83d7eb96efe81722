/**
 * Readings per second over the last minute, from counters sampled every few seconds, so that
 * `/status` (and `uplink status`) can show rates from one request. The counters stay the
 * components' own; this only remembers a few past totals.
 *
 * Durations come from a monotonic clock (performance.now()): a Raspberry Pi has no clock of its
 * own, and its wall clock jumps when NTP first syncs, which would make a rate of nonsense.
 */
import { performance } from 'node:perf_hooks';

export interface RateOptions {
  /** The totals now, e.g. `{ ingested, forwarded }`. */
  read(): Record<string, number>;
  windowMs?: number;
  sampleMs?: number;
  /** A monotonic clock in ms; performance.now() by default. */
  now?: () => number;
}

interface Sample {
  at: number;
  totals: Record<string, number>;
}

export class Rates {
  readonly #read: () => Record<string, number>;
  readonly #windowMs: number;
  readonly #sampleMs: number;
  readonly #now: () => number;
  #samples: Sample[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(options: RateOptions) {
    this.#read = options.read;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#sampleMs = options.sampleMs ?? 5_000;
    this.#now = options.now ?? (() => performance.now());
  }

  async start(): Promise<void> {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.#sampleMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Per second, over the oldest sample still in the window (since start, in the first minute). */
  rates(): { windowSeconds: number; perSecond: Record<string, number> } {
    const now = this.#now();
    const totals = this.#read();
    const oldest = this.#samples[0];
    const seconds = oldest === undefined ? 0 : (now - oldest.at) / 1000;
    const perSecond: Record<string, number> = {};
    for (const [key, total] of Object.entries(totals)) {
      perSecond[key] = seconds > 0 ? round((total - (oldest?.totals[key] ?? 0)) / seconds) : 0;
    }
    return { windowSeconds: round(seconds), perSecond };
  }

  #sample(): void {
    const now = this.#now();
    this.#samples.push({ at: now, totals: this.#read() });
    // Keep one sample at least a window old, so the rate always spans the whole window.
    while (this.#samples.length > 1 && now - this.#samples[1]!.at >= this.#windowMs) this.#samples.shift();
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
